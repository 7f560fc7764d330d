//! The seccomp filter: only `bind` and `connect` of this architecture go to the supervisor
//! (user notification); every other call, and every call of another ABI (x32, a 32-bit
//! program's socketcall), runs as the kernel alone would. Built in the parent; the child only
//! installs it (`install_in_child`: no allocation between fork and exec).

use libc::{c_int, sock_filter, sock_fprog};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;
/// Elsewhere the supervisor is not offered (`SUPPORTED`); the filter would allow everything.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;
/// The architectures whose system call numbers and audit id this filter knows.
pub const SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
/// x86-64's x32 ABI sets this bit in the call number: its calls are not ours.
const X32_BIT: u32 = 0x4000_0000;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

const fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

const LD_ABS_W: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The trapped calls: `bind` and `connect`, or `bind` only (`Calls::BindOnly`).
pub static PROGRAM: [sock_filter; 9] = [
    stmt(LD_ABS_W, OFF_ARCH),
    jump(JEQ, AUDIT_ARCH, 0, 6),
    stmt(LD_ABS_W, OFF_NR),
    jump(JGE, X32_BIT, 4, 0),
    jump(JEQ, libc::SYS_bind as u32, 2, 0),
    jump(JEQ, libc::SYS_connect as u32, 1, 0),
    stmt(RET, libc::SECCOMP_RET_ALLOW),
    stmt(RET, libc::SECCOMP_RET_USER_NOTIF),
    stmt(RET, libc::SECCOMP_RET_ALLOW),
];

/// The same with `connect` never trapped (its test compares with an impossible number).
pub static PROGRAM_BIND_ONLY: [sock_filter; 9] = [
    stmt(LD_ABS_W, OFF_ARCH),
    jump(JEQ, AUDIT_ARCH, 0, 6),
    stmt(LD_ABS_W, OFF_NR),
    jump(JGE, X32_BIT, 4, 0),
    jump(JEQ, libc::SYS_bind as u32, 2, 0),
    jump(JEQ, u32::MAX, 1, 0),
    stmt(RET, libc::SECCOMP_RET_ALLOW),
    stmt(RET, libc::SECCOMP_RET_USER_NOTIF),
    stmt(RET, libc::SECCOMP_RET_ALLOW),
];

/// Which calls the supervisor takes (CONNECTX_SUPERVISE_CALLS, docs/supervisor.md "Cost").
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Calls {
    /// `bind` and `connect`: the preload's outcome for TCP and UDP (the default).
    BindConnect,
    /// `bind` only: TCP `bind(ip, 0)` deferred, nothing else (no connect pays a round trip;
    /// UDP and fixed ports get the kernel's answers).
    BindOnly,
}

impl Calls {
    pub fn program(self) -> &'static [sock_filter; 9] {
        match self {
            Calls::BindConnect => &PROGRAM,
            Calls::BindOnly => &PROGRAM_BIND_ONLY,
        }
    }
}

/// What the child tells the parent through the socket pair: the listener (SCM_RIGHTS) with one
/// byte 0, or no fd and the errno of the step that failed.
#[repr(C)]
pub struct Report {
    pub step: u8,
    pub errno: i32,
}

pub const STEP_OK: u8 = 0;
pub const STEP_NO_NEW_PRIVS: u8 = 1;
pub const STEP_SECCOMP: u8 = 2;

/// WAIT_KILLABLE_RECV (5.19): once the supervisor has taken a call, only a fatal signal
/// interrupts the program's wait. Without it a signal (Go preempts its threads with SIGURG)
/// restarts a call the supervisor may have made already. Tried first, then without.
const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// Runs in the child between fork and exec: async-signal-safe calls only, nothing allocated.
/// Never fails the exec: a filter that cannot be installed is reported and the program runs
/// without it.
///
/// # Safety
/// Call only in a freshly forked child; `report_fd` is the child's end of the socket pair.
pub unsafe fn install_in_child(report_fd: c_int, program: &'static [sock_filter; 9]) {
    let prog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: plain system calls on our own arguments (prog lives on this stack).
    unsafe {
        let install = |flags: u32| {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const sock_fprog,
            ) as c_int
        };
        let try_flags = || {
            let mut fd = -1;
            for flags in [
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 | FLAG_WAIT_KILLABLE_RECV,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32,
            ] {
                fd = install(flags);
                if fd >= 0 || *libc::__errno_location() != libc::EINVAL {
                    break;
                }
            }
            fd
        };
        // With CAP_SYS_ADMIN (connectx run as root) the filter needs no no_new_privs, so
        // setuid programs of the tree (sudo, ping) keep working. Without it, no_new_privs.
        let mut listener = try_flags();
        if listener < 0 && *libc::__errno_location() == libc::EACCES {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return report(report_fd, STEP_NO_NEW_PRIVS, *libc::__errno_location(), -1);
            }
            listener = try_flags();
        }
        if listener < 0 {
            return report(report_fd, STEP_SECCOMP, *libc::__errno_location(), -1);
        }
        report(report_fd, STEP_OK, 0, listener);
        libc::close(listener);
    }
}

/// Sends `Report` (and `fd` if >= 0) on `sock`. Async-signal-safe.
unsafe fn report(sock: c_int, step: u8, errno: i32, fd: c_int) {
    let mut r = Report { step, errno };
    let mut iov = libc::iovec {
        iov_base: (&mut r as *mut Report).cast(),
        iov_len: std::mem::size_of::<Report>(),
    };
    // Room for one fd, aligned as cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; zero is a valid start.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if fd >= 0 {
        m.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is a pure computation.
        m.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
        // SAFETY: the control buffer holds one cmsghdr and an int.
        unsafe {
            let h = libc::CMSG_FIRSTHDR(&m);
            (*h).cmsg_level = libc::SOL_SOCKET;
            (*h).cmsg_type = libc::SCM_RIGHTS;
            (*h).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::copy_nonoverlapping(
                (&fd as *const c_int).cast::<u8>(),
                libc::CMSG_DATA(h),
                4,
            );
        }
    }
    // SAFETY: m points at live buffers.
    unsafe { libc::sendmsg(sock, &m, libc::MSG_NOSIGNAL) };
}

/// The parent's side: the child's report, and the listener if it sent one. None: the child
/// sent nothing (it died before, or exec failed first).
pub fn receive(sock: c_int) -> Option<(Report, Option<c_int>)> {
    let mut r = Report {
        step: 255,
        errno: 0,
    };
    let mut iov = libc::iovec {
        iov_base: (&mut r as *mut Report).cast(),
        iov_len: std::mem::size_of::<Report>(),
    };
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_control = control.as_mut_ptr().cast();
    m.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: m points at live buffers; MSG_CMSG_CLOEXEC keeps the listener out of other execs.
    let n = unsafe { libc::recvmsg(sock, &mut m, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < std::mem::size_of::<Report>() as isize {
        return None;
    }
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote.
    unsafe {
        let h = libc::CMSG_FIRSTHDR(&m);
        if !h.is_null() && (*h).cmsg_level == libc::SOL_SOCKET && (*h).cmsg_type == libc::SCM_RIGHTS
        {
            let mut v: c_int = -1;
            std::ptr::copy_nonoverlapping(libc::CMSG_DATA(h), (&mut v as *mut c_int).cast(), 4);
            fd = Some(v);
        }
    }
    Some((r, fd))
}
