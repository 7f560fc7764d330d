//! libconnectx.so: the preload way in. The exported C symbols (`hooks`, `vfork`) and the
//! constructor/destructor that run at load and exit; everything they call (the policy, the
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
    let on = !p.is_null() && unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes() == b"1";
    SUPERVISED.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    on
}

/// At exit (exit(3) or a return from main; not _exit or a fatal signal): the counters file goes.
#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".fini_array")]
static DESTRUCTOR: extern "C" fn() = {
    extern "C" fn destructor() {
        stats::at_exit();
    }
    destructor
};

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
