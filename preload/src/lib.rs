//! libconnectx.so: the preload way in. The exported C symbols (`hooks`, `vfork`) and the
//! constructor/destructor that run at load and exit; everything they call (the policy, the
//! kernel side, state, config, log, counters) is connectx-core, shared with the `connectx run`
//! supervisor (docs/supervisor.md). The modules of the core are re-exported under this crate's
//! root so the hooks name them as `crate::policy`, `crate::state`, … as before the split.

pub use connectx_core::{
    addr, config, debug, decision, ensure_init, features, info, log, netlink, ownfd, policy, ports,
    real, sockopt, state, stats, sys, tcp, udp, warn,
};

#[cfg(not(test))]
mod hooks;
pub mod vfork;

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
        ensure_init();
    }
    constructor
};
