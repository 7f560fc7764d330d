//! connectx-core: the policy and the kernel side of connectx, shared by its two ways in (see
//! docs/supervisor.md): the preload library (preload/: the exported C symbols, libconnectx.so)
//! and the `connectx` command's supervisor (cli/src/supervise/). Layers, one file each:
//! - `real`: the real libc functions behind them;
//! - `state`: per-socket state; `config`: the environment; `log`: logging; `stats`: counters;
//! - `policy`: shared per-call policy; `sockopt`: the options we set behind the program's back;
//! - `tcp`: the TCP policy; `udp/`: UDP kernel first and the lock (hints, source address, the
//!   memory of a full range); `ports`: the port range and choice, for both;
//! - `netlink`: SOCK_DIAG and route queries;
//! - `ownfd`: the library's own fds (high numbers, identity, the fork gate);
//! - `features`: what this kernel offers (probed once per process) and the step-downs;
//! - `addr`, `sys`, `decision`: addresses, small syscall wrappers, pass-through reasons.

pub mod addr;
pub mod config;
pub mod decision;
pub mod features;
#[macro_use]
pub mod log;
pub mod netlink;
pub mod ownfd;
pub mod policy;
pub mod ports;
pub mod real;
pub mod sockopt;
pub mod state;
pub mod stats;
pub mod sys;
pub mod tcp;
pub mod udp;

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const READY: u8 = 2;
static INIT: AtomicU8 = AtomicU8::new(NOT_STARTED);

/// True once the configuration is read. A hook that runs before our constructor (another
/// library's constructor calling socket) initialises here; a hook that runs *while* we
/// initialise (re-entry) gets false and passes through.
#[inline]
pub fn ensure_init() -> bool {
    INIT.load(Ordering::Acquire) == READY || init_now()
}

#[cold]
fn init_now() -> bool {
    match INIT.compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            init();
            INIT.store(READY, Ordering::Release);
            true
        }
        Err(state) => state == READY,
    }
}

fn getenv(name: &'static str) -> Option<&'static [u8]> {
    let mut buf = [0u8; 64];
    let n = name.len().min(63);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: buf is NUL-terminated; getenv returns NULL or a string that lives as long as the
    // environment entry (we read the values once, at load, before the program changes them).
    let p = unsafe { libc::getenv(buf.as_ptr().cast()) };
    (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
}

fn init() {
    real::resolve_all();
    // SAFETY: getauxval has no preconditions.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        // setuid/setcap program: do nothing and read nothing (PITFALLS 12).
        config::store(config::Config {
            enabled: false,
            ..config::DEFAULT
        });
        return;
    }
    let cfg = config::parse(getenv, |bad| {
        log::write_line(
            config::Level::Warn,
            format_args!(
                "{}={} is not valid (accepted: {}); using {}",
                bad.var,
                String::from_utf8_lossy(bad.value),
                bad.accepted,
                bad.default
            ),
        )
    });
    config::store(cfg);
    stats::configure(getenv);
    if let Some(path) = getenv("CONNECTX_LOG_FILE").filter(|p| !p.is_empty())
        && let Err(e) = log::configure(path)
    {
        let why = if e == libc::ELOOP {
            "is or goes through a symbolic link, not followed"
        } else {
            "cannot be opened"
        };
        log::write_line(
            config::Level::Warn,
            format_args!(
                "CONNECTX_LOG_FILE={} {why} (errno {e}); logging to stderr",
                String::from_utf8_lossy(path)
            ),
        );
    }
    netlink::adopt_now();
    // SAFETY: no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Release);
    if cfg.enabled && cfg.udp {
        udp::inherited::adopt();
    }
    // SAFETY: registering plain functions, run around fork.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(after_fork_in_child),
        )
    };
    crate::debug!("loaded: {cfg}");
}

/// No fd of ours is half-made while the process is copied (ownfd's fork gate).
extern "C" fn before_fork() {
    ownfd::before_fork();
}

extern "C" fn after_fork_in_parent() {
    ownfd::after_fork(false);
}

/// The child of a fork has one thread: undo what other threads of the parent had under way
/// (PITFALLS 18): their busy tokens and "opening" marks, our temporaries, our netlink sockets.
extern "C" fn after_fork_in_child() {
    ownfd::after_fork(true);
    child_resets();
    stats::after_fork_in_child();
}

/// What a child voids of its parent's threads, in every way a child is made: fork (its handler,
/// above), `_Fork` and raw `clone` (no handler runs: `adopt_if_forked`, asked where a stale mark
/// would cost), vfork and posix_spawn (the child shares our memory and may only exec or _exit:
/// nothing to void, our fds are close-on-exec, and `vfork` keeps its hooks off our tables).
fn child_resets() {
    // SAFETY: no preconditions (and glibc does not cache it: right in a `_Fork` child).
    PID.store(unsafe { libc::getpid() }, Ordering::Release);
    ownfd::after_fork_in_child();
    netlink::after_fork_in_child();
    ports::after_fork_in_child();
    udp::source::after_fork_in_child();
    udp::after_fork_in_child();
    state::after_fork_in_child();
}

/// The process the in-memory marks belong to.
static PID: AtomicI32 = AtomicI32::new(0);

/// In a child made without fork handlers (`_Fork`, raw `clone`): void the parent's threads'
/// marks now, once. One getpid: called only where a mark is in the way (a busy token).
pub fn adopt_if_forked() {
    // SAFETY: no preconditions.
    let pid = unsafe { libc::getpid() };
    let was = PID.load(Ordering::Acquire);
    if was != 0
        && was != pid
        && PID
            .compare_exchange(was, pid, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        child_resets();
    }
}
