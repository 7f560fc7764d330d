//! `connectx run` as a supervisor (docs/supervisor.md): for what a preload cannot reach (Go
//! programs, static executables; any program with `--supervise`), the program runs under a
//! seccomp filter that hands its `bind` and `connect` calls to this process, which applies the
//! same policy as the preload (connectx-core) to a duplicate of the program's socket.
//!
//! Process structure: `connectx run` stays the program's parent (it no longer execs): it
//! forwards the signals sent to it, and exits with the program's status (or dies of its
//! signal). A keeper process (`keeper.rs`) holds the listener too, so that if this process is
//! killed the program's calls get CONTINUE (the kernel's behaviour), never ENOSYS. If the
//! filter cannot be installed, one line says why and the program runs without it.
//!
//! - `detect`: which programs need it; `filter`: the seccomp program and its installation;
//! - `notify`: the notification loop and the per-call policy; `record`: socket records
//!   between calls; `keeper`: the process that outlives us.

mod detect;
mod filter;
mod keeper;
mod notify;
mod record;

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    /// Supervise what the preload cannot reach (Go, static).
    Auto,
    /// `--supervise`: any program, its whole tree.
    Always,
    /// `--no-supervise`: the preload only (connectx before supervision).
    Never,
}

/// Why `prog` (the file exec will run, if found) is supervised under `mode`, or None.
pub fn choose(mode: Mode, prog: Option<&Path>) -> Option<&'static str> {
    if !filter::SUPPORTED {
        return None;
    }
    match mode {
        Mode::Never => None,
        Mode::Always => Some("--supervise"),
        Mode::Auto => prog.and_then(detect::needs_supervisor),
    }
}

/// Runs `c` under the supervisor. Err: the program could not be started (as `Command::spawn`
/// reports it: run.rs turns it into 127 or 126).
pub fn run(mut c: Command, prog: &OsStr, why: &str) -> std::io::Result<i32> {
    let calls = calls_from_env();
    c.env("CONNECTX_SUPERVISED", "1");
    let (ours, theirs) = socket_pair()?;
    let child_end = theirs.as_raw_fd();
    // SAFETY: install_in_child makes only async-signal-safe calls.
    unsafe {
        c.pre_exec(move || {
            filter::install_in_child(child_end, calls.program());
            Ok(())
        })
    };
    let mut child = c.spawn()?;
    drop(theirs);
    // Its threads' calls find their process through it (before 6.9, notify::pidfd_of).
    notify::add_leader(child.id() as i32);
    raise_nofile();
    let name = prog.to_string_lossy();
    let _keeper = match filter::receive(ours.as_raw_fd()) {
        Some((r, Some(listener))) if r.step == filter::STEP_OK => {
            match keeper::start(listener) {
                Some((slots, pipe)) => {
                    notify::Loop::start(listener, slots, calls);
                    connectx_core::info!(
                        "supervising {name} ({why}): its bind and connect calls go through connectx (seccomp user notification)"
                    );
                    Some(pipe)
                }
                None => {
                    // Without a keeper our death would leave the program with ENOSYS: serve
                    // anyway (dying is then the only risk), and say so.
                    connectx_core::warn!(
                        "supervising {name} without a keeper (fork failed): if connectx is killed, its binds and connects fail"
                    );
                    let slots: &'static [std::sync::atomic::AtomicU64] = Box::leak(Box::new(
                        [const { std::sync::atomic::AtomicU64::new(0) }; keeper::SLOTS],
                    ));
                    notify::Loop::start(listener, slots, calls);
                    None
                }
            }
        }
        Some((r, _)) => {
            let what = match r.step {
                filter::STEP_NO_NEW_PRIVS => "no_new_privs was refused",
                _ => {
                    "the kernel refused the seccomp filter (a kernel before 5.6, or a seccomp policy that forbids it)"
                }
            };
            eprintln!(
                "connectx: cannot supervise {name}: {what} ({}); it runs without connectx",
                std::io::Error::from_raw_os_error(r.errno)
            );
            None
        }
        None => {
            eprintln!(
                "connectx: cannot supervise {name}: no filter report; it runs without connectx"
            );
            None
        }
    };
    drop(ours);
    CHILD.store(child.id() as i32, Ordering::Relaxed);
    forward_signals();
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if let Some(sig) = status.signal() {
        // Die of the same signal, so the caller sees what it would have seen without us.
        // SAFETY: resetting a disposition and raising a signal.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        return Ok(128 + sig);
    }
    Ok(status.code().unwrap_or(1))
}

/// The supervisor holds a duplicate per call in flight and cached pidfds: its own soft limit of
/// open files goes up to the hard one (after the spawn: the program keeps the limits it had).
fn raise_nofile() {
    // SAFETY: plain data and system calls on it.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// CONNECTX_SUPERVISE_CALLS: `bind,connect` (default) or `bind` (TCP bind(ip,0) only; for
/// programs that need nothing else, at the cost of one round trip per bind and none per
/// connect). A bad value: one line, and the default.
fn calls_from_env() -> filter::Calls {
    match std::env::var("CONNECTX_SUPERVISE_CALLS").ok().as_deref() {
        None | Some("" | "bind,connect") => filter::Calls::BindConnect,
        Some("bind") => filter::Calls::BindOnly,
        Some(v) => {
            connectx_core::warn!(
                "CONNECTX_SUPERVISE_CALLS={v} is not valid (accepted: bind,connect or bind); using bind,connect"
            );
            filter::Calls::BindConnect
        }
    }
}

fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut sv = [0; 2];
    // SAFETY: sv has room for two fds.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: two new fds of ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) })
}

static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals sent to `connectx run` by a process (kill, a service manager) go to the program, as
/// they reached it when connectx exec'd it. Those the terminal sends to the whole foreground
/// group (Ctrl-C, Ctrl-Z, Ctrl-\, a resize) reached the program already: not sent twice, and
/// they do not stop or end the supervisor.
fn forward_signals() {
    extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
        let code = unsafe { (*info).si_code };
        // SI_USER (0), SI_QUEUE, SI_TKILL (< 0): sent by a process. SI_KERNEL: the terminal.
        if code <= 0 {
            let pid = CHILD.load(Ordering::Relaxed);
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(pid, sig) };
        }
    }
    for sig in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGWINCH,
        libc::SIGCONT,
    ] {
        // SAFETY: installing a handler that makes one async-signal-safe call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// How `connectx status` names a supervisor in its list of processes with connectx loaded.
pub const STATUS_LABEL: &str = "supervisor (seccomp user notification)";

/// `pid` is a `connectx run` serving a supervised tree: named connectx and holding a seccomp
/// listener (the keeper holds one too, but is named connectx-keeper).
pub fn is_supervisor(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "connectx" {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|e| {
        std::fs::read_link(e.path())
            .is_ok_and(|l| l.as_os_str().as_encoded_bytes() == b"anon_inode:seccomp notify")
    })
}

/// `connectx run`'s choice (logged at info): Some(the program's exit status, or why it could
/// not start) when `c` ran supervised, None when the caller execs it with the preload.
/// `user_preload` is LD_PRELOAD as the user set it: a supervised tree gets it back without
/// our library (CONNECTX_SUPERVISED=1 makes a libconnectx.so loaded anyway stand down).
pub fn maybe(
    mode: Mode,
    c: &mut Command,
    prog: &OsStr,
    file: Option<&Path>,
    secure: Option<String>,
    user_preload: Option<&str>,
) -> Option<std::io::Result<i32>> {
    // The command reads the settings the library would read in the program (log level).
    for (k, v) in c.get_envs() {
        if let (Some(v), true) = (v, k.to_string_lossy().starts_with("CONNECTX_")) {
            // SAFETY: single-threaded here (no thread of ours started yet).
            unsafe { std::env::set_var(k, v) };
        }
    }
    connectx_core::ensure_init();
    let name = prog.to_string_lossy();
    let why = choose(mode, file);
    // `secure`: why exec raises its privileges (setuid, setgid, setcap), which no_new_privs
    // would stop: such a program is not supervised.
    match (why, secure) {
        (Some(why), Some(s)) => {
            connectx_core::warn!("not supervising {name} ({why}): it {s}");
            return None;
        }
        (None, _) => {
            connectx_core::info!(
                "preloading {name}{}",
                if mode == Mode::Never {
                    " (--no-supervise)"
                } else {
                    ""
                }
            );
            return None;
        }
        _ => {}
    }
    let why = why?;
    let mut c2 = std::mem::replace(c, Command::new(prog));
    match user_preload {
        Some(v) => c2.env("LD_PRELOAD", v),
        None => c2.env_remove("LD_PRELOAD"),
    };
    Some(run(c2, prog, why))
}
