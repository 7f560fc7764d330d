//! The source address the lock checks for a socket that did not bind one, as the kernel will
//! choose it at connect, without using a port: RTM_GETROUTE (netlink.rs) with the socket's
//! context (bound device, mark, TOS, protocol and destination port, for policy routing), and
//! the interface replies come in by (the SOCK_DIAG lookup's ifindex, so a device-bound socket is
//! seen). Only a prediction: the lock compares it with the source the kernel really gave the
//! socket (getsockname after connect) and checks again on a mismatch. Sockets without routing
//! options share a small lock-free cache (a second), so a program connecting to the same
//! resolvers over and over does not pay two system calls each time.

use crate::addr::SockAddr;
use crate::netlink::{self, Ns, RouteContext};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

const ENTRIES: usize = 64;
const TTL_MS: u64 = 1000;

/// One entry, guarded by a sequence number (odd while written): readers never wait, a reader
/// that sees a write in progress simply misses.
struct Entry {
    seq: AtomicU32,
    dst: [AtomicU64; 4],
    src: [AtomicU64; 4],
    oif: AtomicU32,
    at_ms: AtomicU64,
}

static CACHE: [Entry; ENTRIES] = [const {
    Entry {
        seq: AtomicU32::new(0),
        dst: [const { AtomicU64::new(0) }; 4],
        src: [const { AtomicU64::new(0) }; 4],
        oif: AtomicU32::new(0),
        at_ms: AtomicU64::new(0),
    }
}; ENTRIES];

fn slot(key: &[u64; 4]) -> &'static Entry {
    let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        (h ^ w).wrapping_mul(0x0100_0000_01b3)
    });
    &CACHE[(h >> 32) as usize % ENTRIES]
}

fn lookup(key: &[u64; 4], now: u64) -> Option<(SockAddr, u32)> {
    let e = slot(key);
    let s1 = e.seq.load(Acquire);
    if s1 & 1 == 1 {
        return None;
    }
    let dst: [u64; 4] = std::array::from_fn(|i| e.dst[i].load(Relaxed));
    let src: [u64; 4] = std::array::from_fn(|i| e.src[i].load(Relaxed));
    let oif = e.oif.load(Relaxed);
    let at = e.at_ms.load(Relaxed);
    std::sync::atomic::fence(Acquire);
    if e.seq.load(Relaxed) != s1 || dst != *key || at == 0 || now.saturating_sub(at) > TTL_MS {
        return None;
    }
    SockAddr::from_words(src).map(|s| (s, oif))
}

fn store(key: &[u64; 4], src: &SockAddr, oif: u32, now: u64) {
    let e = slot(key);
    let s = e.seq.load(Relaxed);
    if s & 1 == 1 || e.seq.compare_exchange(s, s + 1, Acquire, Relaxed).is_err() {
        return;
    }
    for (w, v) in e.dst.iter().zip(key) {
        w.store(*v, Relaxed);
    }
    for (w, v) in e.src.iter().zip(src.to_words()) {
        w.store(v, Relaxed);
    }
    e.oif.store(oif, Relaxed);
    e.at_ms.store(now.max(1), Relaxed);
    e.seq.store(s + 2, Release);
}

/// In the child after fork: an entry another thread of the parent was writing stays half
/// written; drop it.
pub fn after_fork_in_child() {
    for e in &CACHE {
        let s = e.seq.load(Relaxed);
        if s & 1 == 1 {
            e.at_ms.store(0, Relaxed);
            e.seq.store(s + 1, Release);
        }
    }
}

/// The preferred source address (port 0) for `dst`, shaped like `dst` (v4-mapped for a
/// dual-stack socket talking to IPv4), and the interface the flow leaves by. The key is the
/// destination with its port (policy routing may look at the port).
///
/// Asked in the network namespace of the program's socket `sock`. The cache does not tell
/// namespaces apart: a process that moves between them may get another namespace's answer for
/// a second, which the lock's check after connect (getsockname) catches for the source.
pub fn source_for(
    sock: libc::c_int,
    dst: &SockAddr,
    ctx: &RouteContext,
) -> Result<(SockAddr, u32), libc::c_int> {
    if *ctx != RouteContext::default() {
        return netlink::route_source(Ns::Of(sock), dst, ctx);
    }
    let key = dst.to_words();
    let now = crate::sys::now_ms();
    if let Some(found) = lookup(&key, now) {
        return Ok(found);
    }
    let (src, oif) = netlink::route_source(Ns::Of(sock), dst, ctx)?;
    store(&key, &src, oif, now);
    Ok((src, oif))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_for_a_second() {
        let dst = SockAddr::V4 {
            ip: [198, 51, 100, 7],
            port: 0,
        }
        .to_words();
        let src = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 0,
        };
        assert_eq!(lookup(&dst, 5000), None);
        store(&dst, &src, 1, 5000);
        assert_eq!(lookup(&dst, 5500), Some((src, 1)));
        assert_eq!(lookup(&dst, 6001), None, "expired");
        let other = SockAddr::V4 {
            ip: [198, 51, 100, 8],
            port: 0,
        }
        .to_words();
        assert_eq!(lookup(&other, 5500), None);
    }
}
