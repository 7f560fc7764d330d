//! Consent: the ports the UDP lock may bind into (issue 17).
//!
//! The lock shares a port by binding it with SO_REUSEPORT, which the kernel grants whenever every
//! holder of the port has SO_REUSEPORT and the same uid: a server's workers, a socket that only
//! bound, a connected socket whose program set SO_REUSEPORT itself. Joining such a port would put
//! the lock's socket in their reuseport group for a moment, and the kernel would hand it some of
//! their datagrams (which the lock then drops). So the lock binds into a port only when every
//! socket already on it is a connectx flow:
//! - connected (ESTABLISHED in SOCK_DIAG),
//! - of this process's uid,
//! - carrying connectx's mark: IP_BIND_ADDRESS_NO_PORT, which connectx sets on a flow when it
//!   opens its port to sharing (`mark`). The option means nothing on a socket that has a port
//!   (KERNEL.md), and SOCK_DIAG shows it (INET_DIAG_SOCKOPT, Linux 5.10+). A kernel without that
//!   attribute shows no mark: no port consents, and the lock takes only free ports.
//!
//! How the lock knows before it binds: one SOCK_DIAG dump of the namespace's UDP sockets (both
//! families: a dual-stack socket conflicts with IPv4 holders), made into a bitmap of the ports
//! that do not consent for the address the lock binds, kept for `TTL_MS` per (network namespace,
//! address), and corrected at once when the lock's check meets an unconnected socket on a port
//! (`refuse`). A dump walks the whole table, so it is made only when the lock runs (the kernel
//! found no free port), at most once per `TTL_MS` per key. What remains: a socket that binds into
//! a consenting port within `TTL_MS` of the dump, with SO_REUSEPORT and our uid, can still meet
//! the lock there for a moment (the check after the lock's bind gives such a port back when the
//! lookup names that socket).
//!
//! Static and lock-free: `ENTRIES` views of 8 KiB, each guarded by a generation (odd while
//! rebuilt); a search holding an older generation re-reads the view.

use crate::addr::SockAddr;
use crate::netlink::{self, Dumped, Ns, TCP_ESTABLISHED};
use crate::sockopt::set_noport;
use crate::state::Sock;
use crate::sys;
use libc::c_int;
use std::sync::atomic::{AtomicU64, Ordering::*};

const ENTRIES: usize = 4;
pub const TTL_MS: u64 = 1000;
const WORDS: usize = 65536 / 64;

struct View {
    /// Odd while rebuilt; 0 = never built.
    generation: AtomicU64,
    netns: AtomicU64,
    addr: [AtomicU64; 4],
    built_ms: AtomicU64,
    /// One bit per port: some socket on it does not consent.
    refused: [AtomicU64; WORDS],
}

static VIEWS: [View; ENTRIES] = [const {
    View {
        generation: AtomicU64::new(0),
        netns: AtomicU64::new(0),
        addr: [const { AtomicU64::new(0) }; 4],
        built_ms: AtomicU64::new(0),
        refused: [const { AtomicU64::new(0) }; WORDS],
    }
}; ENTRIES];

/// A view as one search sees it.
#[derive(Clone, Copy, Debug)]
pub struct Handle {
    index: usize,
    generation: u64,
}

/// Does a holder bound to `holder` (dump bytes of `family`) conflict with a bind to `at`?
/// A wildcard on either side does; else the same address (IPv4 as itself or v4-mapped).
fn overlaps(at: &SockAddr, family: c_int, holder: &[u8; 16]) -> bool {
    let holder_v4 = if family == libc::AF_INET {
        Some([holder[0], holder[1], holder[2], holder[3]])
    } else if holder[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
        Some([holder[12], holder[13], holder[14], holder[15]])
    } else {
        None
    };
    let holder_any = match holder_v4 {
        Some(ip) => ip == [0; 4],
        None => *holder == [0; 16],
    };
    if at.is_unspecified() || holder_any {
        return true;
    }
    match (at.as_v4().or_else(|| at.v4_mapped()), holder_v4, at) {
        (Some(a), Some(h), _) => a == h,
        (None, None, SockAddr::V6 { ip, .. }) => ip == holder,
        _ => false,
    }
}

/// The consent rule for one socket on a port (module doc).
pub fn consents(d: &Dumped, uid: u32) -> bool {
    d.state == TCP_ESTABLISHED && d.uid == uid && d.no_port == Some(true)
}

fn key_matches(v: &View, netns: u64, at: &[u64; 4]) -> bool {
    v.netns.load(Relaxed) == netns && v.addr.iter().zip(at).all(|(w, a)| w.load(Relaxed) == *a)
}

/// The view for (`netns`, `at`), fresh (built within `TTL_MS`), built now if need be with a dump
/// in the namespace of the program's socket `sock`. Err: no view could be had (the lock then
/// binds nothing that is held).
pub fn view(sock: c_int, netns: u64, at: &SockAddr) -> Result<Handle, c_int> {
    let key = at.with_port(0).to_words();
    let now = sys::now_ms();
    for (index, v) in VIEWS.iter().enumerate() {
        let generation = v.generation.load(Acquire);
        if generation & 1 == 0
            && generation != 0
            && key_matches(v, netns, &key)
            && now.saturating_sub(v.built_ms.load(Relaxed)) <= TTL_MS
            && v.generation.load(Acquire) == generation
        {
            return Ok(Handle { index, generation });
        }
    }
    build(sock, netns, at, &key, now)
}

fn build(
    sock: c_int,
    netns: u64,
    at: &SockAddr,
    key: &[u64; 4],
    now: u64,
) -> Result<Handle, c_int> {
    // The entry of this key if any, else the oldest; never one another thread is building.
    let mut order: [usize; ENTRIES] = std::array::from_fn(|i| i);
    order.sort_unstable_by_key(|&i| {
        let v = &VIEWS[i];
        (!key_matches(v, netns, key), v.built_ms.load(Relaxed))
    });
    let (index, generation) = order
        .iter()
        .find_map(|&i| {
            let g = VIEWS[i].generation.load(Acquire);
            (g & 1 == 0
                && VIEWS[i]
                    .generation
                    .compare_exchange(g, g + 1, Acquire, Relaxed)
                    .is_ok())
            .then_some((i, g + 1))
        })
        .ok_or(libc::EAGAIN)?;
    let v = &VIEWS[index];
    for w in &v.refused {
        w.store(0, Relaxed);
    }
    // SAFETY: no arguments.
    let uid = unsafe { libc::geteuid() };
    let mut mark = |d: &Dumped| {
        if !consents(d, uid) && overlaps(at, d.family, &d.local_ip) {
            let p = d.local_port as usize;
            v.refused[p / 64].fetch_or(1 << (p % 64), Relaxed);
        }
    };
    let mut result = Ok(());
    for family in [libc::AF_INET, libc::AF_INET6] {
        result = result.and_then(|_| netlink::udp_dump(Ns::Of(sock), family, &mut mark));
    }
    for (w, k) in v.addr.iter().zip(key) {
        w.store(*k, Relaxed);
    }
    v.netns.store(netns, Relaxed);
    match result {
        Ok(()) => {
            v.built_ms.store(now.max(1), Relaxed);
            v.generation.store(generation + 1, Release);
            Ok(Handle {
                index,
                generation: generation + 1,
            })
        }
        Err(e) => {
            v.built_ms.store(0, Relaxed);
            v.generation.store(generation + 1, Release);
            Err(e)
        }
    }
}

/// May the lock bind into `port`? None: the view changed under the search (ask `view` again).
pub fn allows(h: Handle, port: u16) -> Option<bool> {
    let v = &VIEWS[h.index];
    let p = port as usize;
    let refused = v.refused[p / 64].load(Relaxed) & (1 << (p % 64)) != 0;
    (v.generation.load(Acquire) == h.generation).then_some(!refused)
}

/// Marks a flow whose port connectx opens to sharing (module doc): one setsockopt, after the
/// SO_REUSEPORT of the unlock. Undone where the program's value is put back (a disconnect).
pub fn mark(fd: c_int, r: &Sock) {
    let _ = set_noport(fd, r, true);
}

/// Is any port of `range` (reserved ports aside) open to the lock? A bitmap scan, no system
/// call: a range held only by sockets that may not be shared answers EAGAIN at once.
pub fn any_allowed(h: Handle, range: (u16, u16)) -> bool {
    let v = &VIEWS[h.index];
    (range.0..=range.1).any(|p| {
        let i = p as usize;
        v.refused[i / 64].load(Relaxed) & (1 << (i % 64)) == 0 && !crate::ports::is_reserved(p)
    })
}

/// In the child after fork: a view another thread of the parent was building stays half built.
pub fn after_fork_in_child() {
    for v in &VIEWS {
        let g = v.generation.load(Relaxed);
        if g & 1 == 1 {
            v.built_ms.store(0, Relaxed);
            v.generation.store(g + 1, Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumped(state: u8, uid: u32, no_port: Option<bool>) -> Dumped {
        Dumped {
            family: libc::AF_INET,
            state,
            local_port: 40000,
            local_ip: [0; 16],
            uid,
            no_port,
        }
    }

    #[test]
    fn only_marked_connected_flows_of_this_user_consent() {
        assert!(consents(&dumped(TCP_ESTABLISHED, 5, Some(true)), 5));
        assert!(
            !consents(&dumped(TCP_ESTABLISHED, 6, Some(true)), 5),
            "another user"
        );
        assert!(
            !consents(&dumped(7, 5, Some(true)), 5),
            "unconnected: a server"
        );
        assert!(
            !consents(&dumped(TCP_ESTABLISHED, 5, Some(false)), 5),
            "the program's own"
        );
        assert!(
            !consents(&dumped(TCP_ESTABLISHED, 5, None), 5),
            "no SOCKOPT: unknown"
        );
    }

    #[test]
    fn holders_conflict_by_address() {
        let v4 = |ip| SockAddr::V4 { ip, port: 0 };
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert!(overlaps(&v4([0; 4]), libc::AF_INET, &h));
        assert!(overlaps(&v4([127, 0, 0, 1]), libc::AF_INET, &h));
        assert!(!overlaps(&v4([127, 0, 0, 2]), libc::AF_INET, &h));
        assert!(overlaps(&v4([127, 0, 0, 2]), libc::AF_INET, &[0; 16]));
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
        assert!(overlaps(&v4([127, 0, 0, 1]), libc::AF_INET6, &mapped));
        assert!(overlaps(
            &SockAddr::mapped([127, 0, 0, 1], 0),
            libc::AF_INET,
            &h
        ));
        assert!(overlaps(&v4([127, 0, 0, 1]), libc::AF_INET6, &[0; 16]));
    }
}
