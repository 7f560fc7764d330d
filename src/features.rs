//! Kernel features the library relies on, found by asking the kernel (never from its version:
//! distributions backport, e.g. Debian's 6.1 has IP_LOCAL_PORT_RANGE from 6.3).
//!
//! Probed once per process, at the first call that needs one of them (never on a plain TCP
//! connect), all together so that one `info` line names whatever is missing:
//! - cheap, on one throwaway UDP socket that binds nothing: IP_BIND_ADDRESS_NO_PORT, SO_COOKIE,
//!   IP_LOCAL_PORT_RANGE, SO_NETNS_COOKIE (getsockopt answers ENOPROTOOPT where the kernel does
//!   not know the option); openat2 (ENOSYS where the kernel lacks it);
//! - over SOCK_DIAG, with a socket bound to a port of the kernel's choosing (port 0) on the
//!   wildcard: the UDP exact lookup (does it find that socket?), the dump of bound-only TCP
//!   sockets (Linux 6.5+: does the dump of that port list it?).
//!
//! A SOCK_DIAG probe that cannot conclude (netlink refused, no free port) is asked again when its
//! feature is next needed, at most once a second; meanwhile TCP sharing counts it as missing (the
//! safe side) and the UDP lock as present (it asks SOCK_DIAG itself and falls back when it
//! cannot).
//!
//! What each missing feature costs (the step-downs keep every promise that can still be kept):
//! see `WHAT` below and the README's kernel table.

use crate::addr::SockAddr;
use crate::config::Level;
use crate::netlink;
use crate::policy::{IP_BIND_ADDRESS_NO_PORT, IP_LOCAL_PORT_RANGE};
use crate::real;
use crate::sys::{self, KeepErrno};
use libc::{c_int, socklen_t};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// SO_NETNS_COOKIE (Linux 5.14), not in every libc crate version.
pub const SO_NETNS_COOKIE: c_int = 71;

pub const NO_PORT: u32 = 1 << 0;
pub const COOKIE: u32 = 1 << 1;
pub const UDP_EXACT: u32 = 1 << 2;
pub const LOCAL_PORT_RANGE: u32 = 1 << 3;
pub const TCP_BOUND_DUMP: u32 = 1 << 4;
pub const NETNS_COOKIE: u32 = 1 << 5;
pub const OPENAT2: u32 = 1 << 6;
const ALL: u32 = (1 << 7) - 1;

/// Each feature: its bit, its name and first kernel, and what the library does without it.
const WHAT: [(u32, &str); 7] = [
    (
        NO_PORT,
        "IP_BIND_ADDRESS_NO_PORT (Linux 4.2): bind(ip, 0) is left to the kernel (one port per connection)",
    ),
    (
        COOKIE,
        "SO_COOKIE (Linux 4.12): no UDP lock, UDP gets the kernel's own port choice",
    ),
    (
        UDP_EXACT,
        "SOCK_DIAG UDP exact lookup (udp_diag): no UDP lock, UDP gets the kernel's own port choice",
    ),
    (
        LOCAL_PORT_RANGE,
        "IP_LOCAL_PORT_RANGE (Linux 6.3, Debian 6.1.33): programs get this kernel's ENOPROTOOPT for it; no UDP lock (it binds one port at a time through it), UDP gets the kernel's own port choice",
    ),
    (
        TCP_BOUND_DUMP,
        "SOCK_DIAG dump of bound-only TCP sockets (Linux 6.5): no fixed-port TCP sharing (a bind(ip, P) keeps the kernel's EADDRINUSE, so a server between bind and listen keeps its port)",
    ),
    (
        NETNS_COOKIE,
        "SO_NETNS_COOKIE (Linux 5.14): network namespaces are not told apart by cookie",
    ),
    (
        OPENAT2,
        "openat2 (Linux 5.6): the log path is checked without RESOLVE_NO_SYMLINKS",
    ),
];

/// Bits whose probe concluded, and of those, the features present.
static KNOWN: AtomicU32 = AtomicU32::new(0);
static HAVE: AtomicU32 = AtomicU32::new(0);
/// Missing features already named in an info line.
static REPORTED: AtomicU32 = AtomicU32::new(0);

/// When a probe last left something unknown (ms, CLOCK_MONOTONIC_COARSE; 0: never).
static LAST_TRY: AtomicU64 = AtomicU64::new(0);

/// Whether the kernel has `bit`'s feature (probing all unknown features first). `inconclusive`
/// is the answer while the probe cannot tell; it is asked again at most once a second, so a
/// process that may not use SOCK_DIAG pays no probe per call.
fn has(bit: u32, inconclusive: bool) -> bool {
    if KNOWN.load(Acquire) & bit == 0 {
        let last = LAST_TRY.load(Relaxed);
        if last == 0 || sys::now_ms().saturating_sub(last) >= 1000 {
            probe(bit);
            if KNOWN.load(Acquire) & bit == 0 {
                LAST_TRY.store(sys::now_ms().max(1), Relaxed);
            }
        }
    }
    if KNOWN.load(Acquire) & bit == 0 {
        return inconclusive;
    }
    HAVE.load(Acquire) & bit != 0
}

pub fn bind_no_port() -> bool {
    has(NO_PORT, true)
}
pub fn cookie() -> bool {
    has(COOKIE, true)
}
/// IP_LOCAL_PORT_RANGE: per-socket port ranges (the UDP lock binds port 0 within [P, P]).
pub fn local_port_range() -> bool {
    has(LOCAL_PORT_RANGE, true)
}
pub fn netns_cookie() -> bool {
    has(NETNS_COOKIE, true)
}
pub fn openat2() -> bool {
    has(OPENAT2, true)
}
/// The UDP lock needs both SO_COOKIE and the exact lookup to know its own socket.
pub fn udp_lock() -> bool {
    has(COOKIE, true) && has(UDP_EXACT, true) && has(LOCAL_PORT_RANGE, true)
}
/// Whether the UDP lock is known not to be able to run, without probing (so a path that does
/// not need the lock, the kernel's own UDP connect, never pays for the probes).
pub fn udp_lock_known_missing() -> bool {
    let (known, have) = (KNOWN.load(Acquire), HAVE.load(Acquire));
    let need = COOKIE | UDP_EXACT | LOCAL_PORT_RANGE;
    known & need & !have != 0
}
/// Fixed-port TCP sharing is safe only where SOCK_DIAG shows every holder of the port, bound-only
/// ones included (a server between bind and listen must never lose its port).
pub fn tcp_fixed_sharing() -> bool {
    has(TCP_BOUND_DUMP, false)
}

/// Probes every feature not known yet and names, in one info line, those found missing. Two
/// threads may probe at once: the answers are the same, and each missing feature is named once.
/// The two SOCK_DIAG probes only when `asked` names them: the TCP one walks the TCP hash (≈ 1 ms
/// with a large table), which a process that only needs the UDP lock should not pay at its first
/// connect in a full range (issue 17).
#[cold]
fn probe(asked: u32) {
    let _keep = KeepErrno::new();
    let todo = ALL & !KNOWN.load(Acquire);
    let mut known = 0;
    let mut have = 0;
    let mut note = |bit: u32, answer: Option<bool>| {
        if todo & bit != 0
            && let Some(yes) = answer
        {
            known |= bit;
            if yes {
                have |= bit;
            }
        }
    };
    if todo & (NO_PORT | COOKIE | LOCAL_PORT_RANGE | NETNS_COOKIE) != 0 {
        // SAFETY: plain socket(2) through the real function.
        let fd = unsafe { real::socket(libc::AF_INET, cloexec(libc::SOCK_DGRAM), 0) };
        if fd >= 0 {
            note(
                NO_PORT,
                knows(fd, libc::IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT),
            );
            note(COOKIE, knows(fd, libc::SOL_SOCKET, libc::SO_COOKIE));
            note(
                LOCAL_PORT_RANGE,
                knows(fd, libc::IPPROTO_IP, IP_LOCAL_PORT_RANGE),
            );
            note(NETNS_COOKIE, knows(fd, libc::SOL_SOCKET, SO_NETNS_COOKIE));
            sys::close(fd);
        }
    }
    if todo & OPENAT2 != 0 {
        // A size below struct open_how's is refused (EINVAL) before anything is read or opened.
        // SAFETY: no pointer is dereferenced for this size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                -1,
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0usize,
            )
        };
        note(OPENAT2, Some(!(r < 0 && sys::errno() == libc::ENOSYS)));
    }
    if todo & asked & UDP_EXACT != 0 {
        note(UDP_EXACT, probe_udp_exact());
    }
    if todo & asked & TCP_BOUND_DUMP != 0 {
        note(TCP_BOUND_DUMP, probe_tcp_bound_dump());
    }
    HAVE.fetch_or(have, AcqRel);
    KNOWN.fetch_or(known, AcqRel);
    let missing = known & !have;
    let new = missing & !REPORTED.fetch_or(missing, AcqRel);
    if new != 0 {
        report(new);
    }
}

fn report(missing: u32) {
    struct List(u32);
    impl std::fmt::Display for List {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let mut first = true;
            for (bit, what) in WHAT {
                if self.0 & bit != 0 {
                    f.write_str(if first { "" } else { "; " })?;
                    f.write_str(what)?;
                    first = false;
                }
            }
            Ok(())
        }
    }
    crate::log::line(
        Level::Info,
        format_args!("this kernel lacks {}", List(missing)),
    );
}

fn cloexec(ty: c_int) -> c_int {
    ty | libc::SOCK_CLOEXEC
}

/// Does the kernel know this option? ENOPROTOOPT: no. Another error: cannot tell.
fn knows(fd: c_int, level: c_int, name: c_int) -> Option<bool> {
    let mut v = [0u8; 8];
    let mut len = v.len() as socklen_t;
    // SAFETY: v and len are valid for writes of the sizes given.
    let r = unsafe { real::getsockopt(fd, level, name, v.as_mut_ptr().cast(), &mut len) };
    match (r, sys::errno()) {
        (0, _) => Some(true),
        (_, libc::ENOPROTOOPT) => Some(false),
        _ => None,
    }
}

/// A socket bound by the kernel to a port of its choosing on the IPv4 wildcard, and that port.
fn bound_socket(ty: c_int) -> Option<(c_int, u16)> {
    // SAFETY: plain socket(2) through the real function.
    let fd = unsafe { real::socket(libc::AF_INET, cloexec(ty), 0) };
    if fd < 0 {
        return None;
    }
    // A loopback address nobody uses: its ports are free even when the ports of 127.0.0.1 and
    // of the wildcard are all taken (a process that starts while its namespace runs out must
    // still learn what the kernel offers); else the wildcard.
    // A port named first (a few random ones above 1023): the kernel checks only that port's
    // chain, where port 0 makes it walk every hash slot, which costs as much as the EAGAIN of a
    // full range (issue 17: the first connect of a process in a full range).
    let named = (0..4).map(|_| 1024 + (crate::ports::random() % (65536 - 1024)) as u16);
    for (ip, port) in named
        .map(|p| ([127, 255, 255, 254], p))
        .chain([([127, 255, 255, 254], 0), ([0; 4], 0)])
    {
        let a = SockAddr::V4 { ip, port };
        match sys::bind(fd, &a).and_then(|_| sys::getsockname(fd)) {
            Ok(a) if a.port() != 0 => return Some((fd, a.port())),
            _ => {}
        }
    }
    sys::close(fd);
    None
}

/// Does the UDP exact lookup find a socket that is bound and unconnected (as the lock's is while
/// it checks)? Where udp_diag is missing the kernel answers ENOENT for every lookup, which the
/// lock would take for "nobody owns this 4-tuple".
fn probe_udp_exact() -> Option<bool> {
    let (fd, port) = bound_socket(libc::SOCK_DGRAM)?;
    let Ok(local) = sys::getsockname(fd) else {
        sys::close(fd);
        return None;
    };
    let local = local.with_port(port);
    let remote = SockAddr::V4 {
        ip: [0; 4],
        port: 0,
    };
    let me = sys::cookie(fd).ok();
    let answer = match netlink::udp_exact(netlink::Ns::Of(fd), &local, &remote, 0) {
        Ok(Some(f)) => Some(f.local_port == port && me.is_none_or(|c| c == f.cookie)),
        Ok(None) => Some(false),
        Err(_) => None,
    };
    sys::close(fd);
    answer
}

/// Does a SOCK_DIAG dump of a port list a TCP socket that is only bound there?
fn probe_tcp_bound_dump() -> Option<bool> {
    let (fd, port) = bound_socket(libc::SOCK_STREAM)?;
    let answer = netlink::holders(netlink::Ns::Of(fd), libc::IPPROTO_TCP, libc::AF_INET, port)
        .ok()
        .map(|h| h.unconnected > 0);
    sys::close(fd);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_is_described_once() {
        let mut seen = 0;
        for (bit, what) in WHAT {
            assert_eq!(seen & bit, 0, "{what}");
            seen |= bit;
            assert!(
                what.contains("Linux") || what.contains("udp_diag"),
                "{what}"
            );
        }
        assert_eq!(seen, ALL);
    }
}
