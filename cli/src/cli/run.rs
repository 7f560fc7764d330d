//! `connectx run [options] -- CMD [ARGS...]`: exec CMD with the library
//! preloaded. exec (not spawn) so that CMD's exit status, signals and pid are
//! exactly its own.

use super::{Fail, Res, elf, libpath};
use crate::supervise;
use clap::ValueEnum;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Getsockname {
    Bind,
    Port0,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BindBusy {
    Share,
    Kernel,
}

/// Run CMD with libconnectx.so preloaded
///
/// The library is prepended to LD_PRELOAD (not added twice); each option sets the variable the
/// library reads. Exit status is CMD's; 127 if CMD is not found, 126 if it exists but cannot be
/// executed, 2 for a bad command line or a library that is missing or not loadable.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Manage TCP sockets (CONNECTX_TCP, default on)
    #[arg(long, value_enum, value_name = "on|off")]
    tcp: Option<Switch>,
    /// Manage UDP sockets (CONNECTX_UDP, default on)
    #[arg(long, value_enum, value_name = "on|off")]
    udp: Option<Switch>,
    /// Log level (CONNECTX_LOG, default warn); info: exhaustion and fallbacks, debug: every call
    #[arg(long, value_enum, value_name = "LEVEL")]
    log: Option<LogLevel>,
    /// Log file, appended (CONNECTX_LOG_FILE, default stderr); made absolute here
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// What getsockname answers between bind(ip,0) and connect (CONNECTX_GETSOCKNAME)
    #[arg(long, value_enum, value_name = "bind|port0")]
    getsockname: Option<Getsockname>,
    /// A bind to a busy port: share it where it can be shared, or the kernel's EADDRINUSE for
    /// programs that walk a port range on bind errors (CONNECTX_BIND_BUSY, default share)
    #[arg(long, value_enum, value_name = "share|kernel")]
    bind_busy: Option<BindBusy>,
    /// Library to preload [default: $CONNECTX_LIB, else next to this command, else
    /// ../lib/<multiarch>/connectx/, ../lib/connectx/, ../lib/]
    #[arg(long, value_name = "PATH")]
    lib: Option<PathBuf>,
    /// No warning when CMD cannot be preloaded (static, setuid/setgid, file capabilities)
    #[arg(long, short)]
    quiet: bool,
    /// Supervise CMD and its whole process tree (seccomp user notification) instead of
    /// preloading; the default supervises Go programs and static executables only
    #[arg(long, conflicts_with = "no_supervise")]
    supervise: bool,
    /// Never supervise: preload only, also for Go programs and static executables
    #[arg(long)]
    no_supervise: bool,
    /// The program and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "CMD",
        value_hint = clap::ValueHint::CommandWithArguments
    )]
    cmd: Vec<OsString>,
}

pub fn main(a: RunArgs) -> Res<i32> {
    let lib = libpath::find(a.lib.as_deref().map(|p| p.to_str().unwrap_or("")))?;
    let existing = std::env::var("LD_PRELOAD").ok();
    let preload = libpath::preload_value(&lib, existing.as_deref());
    let prog = &a.cmd[0];

    let mut c = Command::new(prog);
    c.args(&a.cmd[1..]).env("LD_PRELOAD", preload);
    let sw = |s: Switch| match s {
        Switch::On => "1",
        Switch::Off => "0",
    };
    if let Some(s) = a.tcp {
        c.env("CONNECTX_TCP", sw(s));
    }
    if let Some(s) = a.udp {
        c.env("CONNECTX_UDP", sw(s));
    }
    if let Some(l) = a.log {
        c.env(
            "CONNECTX_LOG",
            l.to_possible_value().expect("named").get_name(),
        );
    }
    if let Some(g) = a.getsockname {
        c.env(
            "CONNECTX_GETSOCKNAME",
            g.to_possible_value().expect("named").get_name(),
        );
    }
    if let Some(b) = a.bind_busy {
        c.env(
            "CONNECTX_BIND_BUSY",
            b.to_possible_value().expect("named").get_name(),
        );
    }
    if let Some(f) = a.log_file {
        // Relative, each process that changes directory would write somewhere else.
        let abs = std::path::absolute(&f).map_err(|e| Fail {
            code: 2,
            msg: format!("--log-file {}: {}", f.display(), super::ioerr(&e)),
        })?;
        c.env("CONNECTX_LOG_FILE", abs);
    }
    // docs/supervisor.md: what the preload cannot reach runs supervised.
    let mode = match (a.supervise, a.no_supervise) {
        (true, _) => supervise::Mode::Always,
        (_, true) => supervise::Mode::Never,
        _ => supervise::Mode::Auto,
    };
    let file = resolve(prog);
    let secure = file.as_deref().and_then(secure_exec);
    let user_preload = existing.as_deref();
    if let Some(code) = supervise::maybe(mode, &mut c, prog, file.as_deref(), secure, user_preload)
    {
        return code.map_err(|err| cannot_run(prog, &err));
    }
    if !a.quiet {
        if let Some(why) = file.and_then(|p| cannot_preload(&p)) {
            eprintln!(
                "connectx: warning: {} {why}: the dynamic loader will not preload connectx into it",
                prog.to_string_lossy()
            );
        }
    }
    // exec only returns on failure.
    let err = c.exec();
    Err(cannot_run(prog, &err))
}

fn cannot_run(prog: &OsString, err: &std::io::Error) -> Fail {
    // As env(1) and the shells: 127 when not found, 126 when found but not executable.
    let code = if err.raw_os_error() == Some(libc::ENOENT) {
        127
    } else {
        126
    };
    Fail {
        code,
        msg: format!(
            "cannot run {}: {}",
            prog.to_string_lossy(),
            super::ioerr(err)
        ),
    }
}

/// The file exec will run: `prog` itself if it has a slash, else the first executable file of
/// that name on PATH (as execvp searches).
fn resolve(prog: &OsString) -> Option<PathBuf> {
    let p = Path::new(prog);
    if prog.as_encoded_bytes().contains(&b'/') {
        return Some(p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(p)).find(|c| {
        c.metadata()
            .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    })
}

/// Why the loader will not preload into `p` (PITFALLS: static binaries have no loader;
/// secure-execution programs get LD_PRELOAD only from system directories, and connectx does
/// nothing in them anyway), or None. Scripts are fine: their interpreter is what runs.
pub fn cannot_preload(p: &Path) -> Option<String> {
    if let Some(why) = secure_exec(p) {
        return Some(why);
    }
    match elf::read(p) {
        Ok(Some(e)) if !e.interp => Some("is statically linked (no ELF interpreter)".into()),
        _ => None,
    }
}

/// Why exec of `p` changes the effective ids or capabilities (AT_SECURE), or None.
fn secure_exec(p: &Path) -> Option<String> {
    let m = std::fs::metadata(p).ok()?;
    // SAFETY: no preconditions.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // The kernel sets AT_SECURE when exec changes the effective ids.
    if m.mode() & 0o4000 != 0 && m.uid() != euid {
        return Some(format!("is setuid (owner uid {})", m.uid()));
    }
    if m.mode() & 0o2000 != 0 && m.gid() != egid {
        return Some(format!("is setgid (group gid {})", m.gid()));
    }
    // File capabilities raise the permitted set (AT_SECURE) except for root, who has them all.
    if euid != 0 && has_file_caps(p) {
        return Some("has file capabilities (setcap)".into());
    }
    None
}

fn has_file_caps(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: NUL-terminated strings; a NULL buffer of size 0 asks for the value's size.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    n > 0
}
