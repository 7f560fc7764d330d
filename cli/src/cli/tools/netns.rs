//! `connectx _netns [--range LO-HI] [--reserved LIST] -- CMD...`
//!
//! Runs CMD in a fresh network namespace with lo up and the port sysctls set.
//! As root it unshares the network namespace directly; otherwise it first
//! enters a new user namespace mapping the caller to root. When possible it
//! also unshares a PID namespace, so that CMD is its init: when CMD ends (or
//! this process dies), every server or holder left in the namespace is killed
//! by the kernel — no test can leak processes.

use super::args::Args;
use super::{Fail, Res, usage_err};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

/// Exit status when no namespace can be created (the demo recognises it).
pub const NO_NAMESPACE: i32 = 3;

pub fn main(raw: Vec<std::ffi::OsString>) -> Res<i32> {
    let mut a = Args::new(raw);
    let mut range: Option<(u16, u16)> = None;
    let mut reserved: Option<String> = None;
    while let Some(f) = a.next_flag()? {
        match f.as_str() {
            "--range" => range = Some(parse_range(&a.value()?)?),
            "--reserved" => {
                let v = a.value()?;
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
                {
                    return Err(usage_err(format!(
                        "option --reserved: `{v}` is not a list like 40011,40014-40018"
                    )));
                }
                reserved = Some(v);
            }
            _ => return Err(a.unknown(&f, "_netns")),
        }
    }
    let cmd = a.rest();
    let Some(prog) = cmd.first() else {
        return Err(usage_err(
            "_netns: no command given (usage: connectx _netns [--range LO-HI] [--reserved LIST] -- CMD...)",
        ));
    };
    let own_pidns = enter()?;
    setup(range, reserved.as_deref())?;

    let mut c = Command::new(prog);
    c.args(&cmd[1..]);
    // SAFETY: the closure only makes async-signal-safe system calls.
    unsafe {
        c.pre_exec(|| {
            // Die with us, so a killed test leaves nothing running.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn().map_err(|e| Fail {
        code: 127,
        msg: format!(
            "cannot run {}: {}",
            prog.to_string_lossy(),
            super::ioerr(&e)
        ),
    })?;
    let st = child
        .wait()
        .map_err(|e| super::fail(format!("_netns: wait: {e}")))?;
    let _ = own_pidns;
    Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
}

pub fn parse_range(v: &str) -> Res<(u16, u16)> {
    let bad = || {
        usage_err(format!(
            "option --range: `{v}` is not LO-HI with 1 <= LO <= HI <= 65535"
        ))
    };
    let (lo, hi) = v.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call; we are single-threaded here.
    if unsafe { libc::unshare(flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Enter new namespaces. Returns whether a PID namespace was created.
fn enter() -> Res<bool> {
    // SAFETY: trivial getters.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let net_pid = libc::CLONE_NEWNET | libc::CLONE_NEWPID;
    let mut first_err = None;
    if uid == 0 {
        match unshare(net_pid) {
            Ok(()) => return Ok(true),
            Err(e) => first_err = Some(e),
        }
        if unshare(libc::CLONE_NEWNET).is_ok() {
            return Ok(false);
        }
    }
    // Unprivileged (or a root without CAP_SYS_ADMIN): a user namespace first.
    let userns = unshare(libc::CLONE_NEWUSER | net_pid)
        .map(|()| true)
        .or_else(|_| unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET).map(|()| false));
    match userns {
        Ok(pidns) => {
            let w = |p: &str, s: String| std::fs::write(p, s).map_err(|e| (p.to_string(), e));
            w("/proc/self/setgroups", "deny".into())
                .and_then(|()| w("/proc/self/uid_map", format!("0 {uid} 1")))
                .and_then(|()| w("/proc/self/gid_map", format!("0 {gid} 1")))
                .map_err(|(p, e)| super::fail(format!("_netns: writing {p}: {e}")))?;
            Ok(pidns)
        }
        Err(e) => Err(Fail {
            code: NO_NAMESPACE,
            msg: format!(
                "cannot create a network namespace (unshare: {}): run as root, or enable unprivileged user namespaces (sysctl user.max_user_namespaces > 0, and kernel.unprivileged_userns_clone=1 where it exists)",
                super::ioerr(&first_err.unwrap_or(e))
            ),
        }),
    }
}

/// Bring lo up and set the port sysctls of the (new) namespace.
fn setup(range: Option<(u16, u16)>, reserved: Option<&str>) -> Res<()> {
    lo_up().map_err(|e| super::fail(format!("_netns: bringing lo up: {e}")))?;
    if let Some((lo, hi)) = range {
        write_sysctl("ip_local_port_range", &format!("{lo} {hi}"))?;
    }
    if let Some(r) = reserved {
        write_sysctl("ip_local_reserved_ports", r)?;
    }
    Ok(())
}

fn write_sysctl(name: &str, v: &str) -> Res<()> {
    let p = format!("/proc/sys/net/ipv4/{name}");
    std::fs::write(&p, v).map_err(|e| super::fail(format!("_netns: writing `{v}` to {p}: {e}")))
}

/// struct ifreq with the flags member of its union (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn lo_up() -> io::Result<()> {
    let s = super::sock::Sock::new(libc::AF_INET, libc::SOCK_DGRAM)?;
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: req is a properly sized struct ifreq.
    if unsafe { libc::ioctl(s.fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: as above.
    if unsafe { libc::ioctl(s.fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
