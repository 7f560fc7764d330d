//! libconnectx.so: the preload way in. The exported C symbols (`hooks`, `vfork`) and the
//! constructor that runs at load; everything they call (the policy, the
//! kernel side, state, config, log, counters) is connectx-core, shared with the `connectx run`
//! supervisor (docs/supervisor.md). The core is re-exported under this crate's root so the
//! hooks name its modules as `crate::policy`, `crate::state`, … as before the split.

// Everything public in the core, under this crate's root: a module or function the core adds
// is found by the hooks without an edit here.
pub use connectx_core::*;

#[cfg(not(test))]
mod hooks;
pub mod vfork;

use std::sync::atomic::{AtomicU8, Ordering};

/// Whether `connectx run` supervises this process tree (CONNECTX_SUPERVISED=1 in the
/// environment at load, see docs/supervisor.md): the supervisor then handles every trapped
/// call, so the hooks stand down (each makes the real call) and no call is handled twice.
/// 0: not read yet; 1: not supervised; 2: supervised. Read once (the first hook or the
/// constructor, whichever runs first), so a program changing its environment later changes
/// nothing.
static SUPERVISED: AtomicU8 = AtomicU8::new(0);

/// True when the hooks must only make the real call (a vfork child, or a supervised tree).
#[inline]
pub fn stands_down() -> bool {
    vfork::in_child()
        || match SUPERVISED.load(Ordering::Relaxed) {
            0 => read_supervised(),
            v => v == 2,
        }
}

#[cold]
fn read_supervised() -> bool {
    // SAFETY: a NUL-terminated literal; getenv returns NULL or a NUL-terminated string.
    let p = unsafe { libc::getenv(c"CONNECTX_SUPERVISED".as_ptr()) };
    // SAFETY: p is non-null, a string of the environment.
    let on =
        !p.is_null() && unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes() == b"1" && under_filter();
    SUPERVISED.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    on
}

/// The process runs under a seccomp filter ("Seccomp:\t2" in /proc/self/status): the variable
/// alone (copied into an environment outside the supervised tree) must not silence us.
/// Where /proc cannot be read, the variable is trusted (a call handled twice is the worse
/// mistake). Raw system calls (our own exported `close` would come back here), on the stack.
fn under_filter() -> bool {
    let mut buf = [0u8; 4096];
    // SAFETY: a NUL-terminated literal; reading into our own buffer; closing our own fd.
    let n = unsafe {
        let fd = libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return true;
        }
        let n = libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len());
        libc::syscall(libc::SYS_close, fd);
        n
    };
    if n <= 0 {
        return true;
    }
    let text = &buf[..n as usize];
    let key = b"\nSeccomp:\t";
    match text.windows(key.len()).position(|w| w == key) {
        Some(i) => text.get(i + key.len()) == Some(&b'2'),
        None => true,
    }
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = {
    extern "C" fn constructor() {
        if stands_down() {
            return;
        }
        ensure_init();
    }
    constructor
};
