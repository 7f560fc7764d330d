//! vfork: the child shares the parent's memory, so a hook running in it (a close or dup2 before
//! exec) would change the parent's socket table. Our `vfork` marks the time the child runs: the
//! hooks then only make the real call (`in_child`), and the parent clears the mark when the
//! kernel resumes it (after the child's exec or exit).
//!
//! A vfork wrapper cannot be a Rust function: the child returns through the caller's stack frame,
//! which the parent then reuses. Like glibc's own vfork (sysdeps/unix/sysv/linux/x86_64/vfork.S)
//! it keeps the return address in a register across the syscall. x86-64 only; elsewhere glibc's
//! vfork is called directly and a vfork child's closes reach the shared table (README limits).
//! While the mark is set, other threads of the parent also skip bookkeeping for that moment:
//! their sockets then pass through, which is safe.

use std::sync::atomic::{AtomicBool, Ordering};

static IN_VFORK_CHILD: AtomicBool = AtomicBool::new(false);

/// True while a vfork child of this process runs on our memory.
#[inline]
pub fn in_child() -> bool {
    IN_VFORK_CHILD.load(Ordering::Relaxed)
}

/// Sets errno from a failed raw vfork and returns -1 (called by the assembly below).
#[cfg_attr(any(test, not(target_arch = "x86_64")), allow(dead_code))]
extern "C" fn vfork_failed(neg_errno: i64) -> i64 {
    crate::sys::set_errno(-neg_errno as libc::c_int);
    -1
}

/// # Safety
/// As vfork(2): the child may only exec or _exit.
#[cfg(all(target_arch = "x86_64", not(test)))]
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn vfork() -> libc::pid_t {
    std::arch::naked_asm!(
        // The return address goes to rdi, which the syscall preserves: the child may use the stack.
        "pop rdi",
        "mov eax, 58", // SYS_vfork
        "syscall",
        "push rdi",
        "cmp rax, -4095",
        "jae 3f",
        "test rax, rax",
        "jnz 2f",
        // Child: mark, and return to the caller.
        "mov byte ptr [rip + {flag}], 1",
        "ret",
        // Parent, resumed once the child has exec'd or exited.
        "2:",
        "mov byte ptr [rip + {flag}], 0",
        "ret",
        "3:",
        "mov rdi, rax",
        "jmp {failed}",
        flag = sym IN_VFORK_CHILD,
        failed = sym vfork_failed,
    )
}
