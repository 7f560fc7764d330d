//! Which local ports the UDP lock (and TCP's fixed-port choice) may use: the network
//! namespace's ip_local_port_range minus ip_local_reserved_ports, narrowed by the socket's
//! IP_LOCAL_PORT_RANGE, visited from a random start (like the kernel's own choice, so concurrent
//! processes rarely collide).
//!
//! One copy per network namespace, keyed by the socket's (SO_NETNS_COOKIE): a program that moves
//! to another namespace (unshare, setns) gets that namespace's range and reserved ports at once
//! (issue 17). Each copy is read on first use and again when older than a second: at most one
//! read of the two /proc files per second and namespace. /proc/sys/net shows the namespace of the
//! reading thread, so a copy is made only when the thread is in the socket's namespace (checked
//! with a throwaway socket, at each read); a socket of another namespace without a copy gets
//! None (the kernel's own answer stands). Static atomics: no allocation, no lock on the hook path.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

const REFRESH_MS: u64 = 1000;
const ENTRIES: usize = 4;

struct Copy {
    netns: AtomicU64,
    range: AtomicU32, // lo | hi << 16; 0 = never read
    read_at: AtomicU64,
    refreshing: AtomicBool,
    reserved: [AtomicU64; 1024],
}

static COPIES: [Copy; ENTRIES] = [const {
    Copy {
        netns: AtomicU64::new(0),
        range: AtomicU32::new(0),
        read_at: AtomicU64::new(0),
        refreshing: AtomicBool::new(false),
        reserved: [const { AtomicU64::new(0) }; 1024],
    }
}; ENTRIES];

/// A namespace's ports, as one call sees them.
#[derive(Clone, Copy)]
pub struct NsPorts(&'static Copy);

/// Parses "lo\thi\n".
pub fn parse_range(s: &[u8]) -> Option<(u16, u16)> {
    let mut it = s
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let lo = parse_u16(it.next()?)?;
    let hi = parse_u16(it.next()?)?;
    (lo <= hi && lo > 0).then_some((lo, hi))
}

fn parse_u16(s: &[u8]) -> Option<u16> {
    std::str::from_utf8(s).ok()?.trim().parse().ok()
}

/// Parses "11,14-18,19\n" and calls `f(lo, hi)` for each range.
pub fn parse_reserved(s: &[u8], mut f: impl FnMut(u16, u16)) {
    for part in s
        .split(|&c| c == b',' || c.is_ascii_whitespace())
        .filter(|p| !p.is_empty())
    {
        let mut ends = part.splitn(2, |&c| c == b'-');
        let lo = ends.next().and_then(parse_u16);
        let hi = ends.next().map_or(lo, parse_u16);
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo <= hi
        {
            f(lo, hi)
        }
    }
}

/// Reads a small /proc file into `buf` (open and read are not hooked; close goes to the real one).
fn read_proc(path: &[u8], buf: &mut [u8]) -> Option<usize> {
    // SAFETY: path is NUL-terminated; buf is writable for its length.
    unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        crate::sys::close(fd);
        usize::try_from(n).ok()
    }
}

/// The calling thread's network namespace (SO_NETNS_COOKIE of a throwaway socket; 0 unknown).
fn thread_netns() -> u64 {
    // Recorded while it lives (ownfd's scratch): a fork child closes its copy.
    let Ok(fd) = crate::ownfd::scratch_socket(libc::AF_INET, libc::SOCK_DGRAM) else {
        return 0;
    };
    let ns = crate::udp::exhausted::netns_cookie(fd);
    crate::ownfd::close_scratch(fd);
    ns
}

/// Reads the thread's namespace files into `c`, if the thread is in namespace `netns`.
fn refresh(c: &Copy, netns: u64) -> bool {
    let _keep = crate::sys::KeepErrno::new();
    if netns != 0 && thread_netns() != netns {
        return false;
    }
    let mut buf = [0u8; 64];
    let Some(range) = read_proc(b"/proc/sys/net/ipv4/ip_local_port_range\0", &mut buf)
        .and_then(|n| parse_range(&buf[..n]))
    else {
        return false;
    };
    let mut rbuf = [0u8; 4096];
    let n = read_proc(b"/proc/sys/net/ipv4/ip_local_reserved_ports\0", &mut rbuf).unwrap_or(0);
    for w in &c.reserved {
        w.store(0, Relaxed);
    }
    parse_reserved(&rbuf[..n], |lo, hi| {
        for p in lo..=hi {
            c.reserved[p as usize / 64].fetch_or(1 << (p % 64), Relaxed);
        }
    });
    c.range
        .store(range.0 as u32 | (range.1 as u32) << 16, Release);
    c.read_at.store(crate::sys::now_ms(), Release);
    true
}

/// The ports of the network namespace of socket `fd`, read again when older than a second.
/// None if they cannot be read (/proc, or a namespace this thread is not in and has no copy of).
pub fn of_socket(fd: libc::c_int) -> Option<NsPorts> {
    in_namespace(crate::udp::exhausted::netns_cookie(fd))
}

/// As `of_socket`, for the namespace whose SO_NETNS_COOKIE is `netns`.
pub fn in_namespace(netns: u64) -> Option<NsPorts> {
    let now = crate::sys::now_ms();
    let found = COPIES
        .iter()
        .find(|c| c.netns.load(Acquire) == netns && c.range.load(Acquire) != 0);
    if let Some(c) = found {
        if now.saturating_sub(c.read_at.load(Acquire)) > REFRESH_MS
            && !c.refreshing.swap(true, Acquire)
        {
            refresh(c, netns);
            c.refreshing.store(false, Release);
        }
        return Some(NsPorts(c));
    }
    // A namespace without a copy: the oldest entry not being read takes it (read here rather
    // than wait for a thread that is reading one, which may not run for a long while on a busy
    // machine; two threads may then each make a copy of one namespace, which is harmless).
    for _ in 0..64 {
        let c = COPIES
            .iter()
            .filter(|c| !c.refreshing.load(Acquire))
            .min_by_key(|c| c.read_at.load(Acquire));
        if let Some(c) = c
            && !c.refreshing.swap(true, Acquire)
        {
            c.range.store(0, Release);
            c.netns.store(netns, Release);
            let ok = refresh(c, netns);
            c.refreshing.store(false, Release);
            return ok.then_some(NsPorts(c));
        }
        if let Some(c) = COPIES
            .iter()
            .find(|c| c.netns.load(Acquire) == netns && c.range.load(Acquire) != 0)
        {
            return Some(NsPorts(c));
        }
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
    }
    None
}

impl NsPorts {
    pub fn range(&self) -> (u16, u16) {
        let r = self.0.range.load(Acquire);
        (r as u16, (r >> 16) as u16)
    }

    pub fn is_reserved(&self, port: u16) -> bool {
        self.0.reserved[port as usize / 64].load(Relaxed) & (1 << (port % 64)) != 0
    }
}

/// In the child after fork: a refresh that another thread of the parent had under way will never
/// finish here.
pub fn after_fork_in_child() {
    for c in &COPIES {
        c.refreshing.store(false, Release);
    }
}

/// The kernel's rule for IP_LOCAL_PORT_RANGE: it narrows the namespace range; an empty
/// intersection falls back to the namespace range.
pub fn narrow(ns: (u16, u16), socket_range: u32) -> (u16, u16) {
    let (slo, shi) = (socket_range as u16, (socket_range >> 16) as u16);
    let lo = if slo != 0 { ns.0.max(slo) } else { ns.0 };
    let hi = if shi != 0 { ns.1.min(shi) } else { ns.1 };
    if lo <= hi { (lo, hi) } else { ns }
}

/// Visits every port of `range` once, from a random start with a random stride coprime to the
/// range's size. A stride of 1 would fill the range in runs (as linear probing fills a hash
/// table), so that near exhaustion a connect would walk long runs of taken ports.
pub fn shuffled(range: (u16, u16)) -> impl Iterator<Item = u16> {
    let n = range.1 as u64 - range.0 as u64 + 1;
    let start = random() % n;
    let mut stride = 1;
    for _ in 0..64 {
        let s = 1 + random() % n.saturating_sub(1).max(1);
        if gcd(s, n) == 1 {
            stride = s;
            break;
        }
    }
    (0..n).map(move |i| (range.0 as u64 + (start + i * stride) % n) as u16)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

thread_local! {
    // const-initialised, no destructor: nothing registered with the host (PITFALLS 15).
    static RNG: Cell<u64> = const { Cell::new(0) };
}
static SEED: AtomicU64 = AtomicU64::new(0);

/// splitmix64 per thread, seeded from AT_RANDOM and a global counter. Not cryptographic: it only
/// spreads processes over the range, as the kernel's own port choice does.
pub fn random() -> u64 {
    RNG.with(|c| {
        let mut s = c.get();
        if s == 0 {
            let mut base = SEED.load(Relaxed);
            if base == 0 {
                // SAFETY: AT_RANDOM points to 16 random bytes the kernel gave the process.
                let p = unsafe { libc::getauxval(libc::AT_RANDOM) } as *const u64;
                base = if p.is_null() {
                    crate::sys::now_ms() | 1
                } else {
                    (unsafe { p.read_unaligned() }) | 1
                };
                SEED.store(base, Relaxed);
            }
            s = base ^ SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed) ^ (c as *const _ as u64);
        }
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        c.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_formats() {
        assert_eq!(parse_range(b"32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range(b"40000 40009"), Some((40000, 40009)));
        assert_eq!(parse_range(b"9 2"), None);
        let mut got = vec![];
        parse_reserved(b"11,14-18,19\n", |a, b| got.push((a, b)));
        assert_eq!(got, vec![(11, 11), (14, 18), (19, 19)]);
        got.clear();
        parse_reserved(b"\n", |a, b| got.push((a, b)));
        assert!(got.is_empty());
    }

    #[test]
    fn every_port_visited_once() {
        for range in [
            (10, 21),
            (40000, 40000),
            (40000, 40001),
            (1, 65535),
            (32768, 60999),
        ] {
            let mut v: Vec<u16> = shuffled(range).collect();
            v.sort();
            assert_eq!(v, (range.0..=range.1).collect::<Vec<_>>());
        }
    }

    #[test]
    fn socket_range_only_narrows() {
        assert_eq!(narrow((40000, 40009), 0), (40000, 40009));
        assert_eq!(narrow((40000, 40009), 40003 | 40005 << 16), (40003, 40005));
        assert_eq!(narrow((40000, 40009), 1000 | 2000 << 16), (40000, 40009));
        assert_eq!(narrow((40000, 40009), 40005), (40005, 40009));
    }

    #[test]
    fn random_starts_differ() {
        let a: Vec<u64> = (0..4).map(|_| random()).collect();
        assert!(a.windows(2).all(|w| w[0] != w[1]));
    }
}
