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
//! None (the kernel's own answer stands). One thread reads a namespace's first copy while the
//! others wait for it (a program whose threads all need the lock at once, on a slow machine,
//! once got the kernel's EAGAIN instead: issue 17). Static atomics: no allocation, no lock on
//! the hook path.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

const REFRESH_MS: u64 = 1000;
const ENTRIES: usize = 4;

struct Copy {
    netns: AtomicU64,
    range: AtomicU32, // lo | hi << 16; 0 = never read
    read_at: AtomicU64,
    refreshing: AtomicBool,
    /// When the entry was last given to a namespace or began a read again (ms): a read older
    /// than `WAIT_MS` was left unfinished.
    claimed_at: AtomicU64,
    reserved: [AtomicU64; 1024],
}

static COPIES: [Copy; ENTRIES] = [const {
    Copy {
        netns: AtomicU64::new(0),
        range: AtomicU32::new(0),
        read_at: AtomicU64::new(0),
        refreshing: AtomicBool::new(false),
        claimed_at: AtomicU64::new(0),
        reserved: [const { AtomicU64::new(0) }; 1024],
    }
}; ENTRIES];

/// A namespace's ports, as one call sees them: the range as it was read, and the copy's
/// reserved ports (an entry given to another namespace meanwhile, when more than `ENTRIES` are
/// in use at once, is read as "none reserved": the kernel's autobind, which the UDP lock uses,
/// honours them all the same).
#[derive(Clone, Copy)]
pub struct NsPorts {
    copy: &'static Copy,
    netns: u64,
    range: (u16, u16),
}

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

/// Reads the thread's namespace files into `c`, if the thread is in namespace `netns`. The
/// reserved ports are written word by word, never cleared first: a reader of the copy meanwhile
/// sees the old list or the new one for each word, never an empty one.
fn refresh(c: &Copy, netns: u64) -> bool {
    let _keep = crate::sys::KeepErrno::new();
    if netns != 0 && thread_netns() != netns {
        return false;
    }
    #[cfg(test)]
    std::thread::sleep(tests::READ_DELAY);
    let mut buf = [0u8; 64];
    let Some(range) = read_proc(b"/proc/sys/net/ipv4/ip_local_port_range\0", &mut buf)
        .and_then(|n| parse_range(&buf[..n]))
    else {
        return false;
    };
    let mut rbuf = [0u8; 4096];
    let n = read_proc(b"/proc/sys/net/ipv4/ip_local_reserved_ports\0", &mut rbuf).unwrap_or(0);
    store_reserved(c, &rbuf[..n]);
    c.range
        .store(range.0 as u32 | (range.1 as u32) << 16, Release);
    c.read_at.store(crate::sys::now_ms(), Release);
    true
}

/// Writes the list of reserved ports (the /proc format) into `c`. The kernel prints it in
/// ascending order: each word is complete when the list moves past it (out of order, a word
/// already written only gains bits).
fn store_reserved(c: &Copy, list: &[u8]) {
    let mut word = 0usize;
    let mut bits = 0u64;
    parse_reserved(list, |lo, hi| {
        for p in lo..=hi {
            let w = p as usize / 64;
            if w > word {
                c.reserved[word].store(bits, Relaxed);
                for skipped in &c.reserved[word + 1..w] {
                    skipped.store(0, Relaxed);
                }
                (word, bits) = (w, 0);
            }
            if w < word {
                c.reserved[w].fetch_or(1 << (p % 64), Relaxed);
            } else {
                bits |= 1 << (p % 64);
            }
        }
    });
    c.reserved[word].store(bits, Relaxed);
    for rest in &c.reserved[word + 1..] {
        rest.store(0, Relaxed);
    }
}

/// The ports of the network namespace of socket `fd`, read again when older than a second.
/// None if they cannot be read (/proc, or a namespace this thread is not in and has no copy of).
pub fn of_socket(fd: libc::c_int) -> Option<NsPorts> {
    in_namespace(crate::udp::exhausted::netns_cookie(fd))
}

/// How long a call waits for another thread's first read of a namespace's copy (a few system
/// calls; far longer only on a machine so busy that the reader does not run), and after which
/// a read or a claim left unfinished (a thread gone) is taken over.
const WAIT_MS: u64 = 2000;

/// Entries are given to namespaces one at a time (0: free; else when it was taken, in ms + 1).
static CLAIMING: AtomicU64 = AtomicU64::new(0);

/// As `of_socket`, for the namespace whose SO_NETNS_COOKIE is `netns`.
///
/// One thread reads a namespace's copy; the others wait for it rather than answer "no copy":
/// many threads whose first connects all need the lock at once (a program starting on a full
/// range) must not get the kernel's EAGAIN because their reader had not run yet.
pub fn in_namespace(netns: u64) -> Option<NsPorts> {
    let start = crate::sys::now_ms();
    loop {
        let now = crate::sys::now_ms();
        if let Some(c) = COPIES
            .iter()
            .find(|c| c.netns.load(Acquire) == netns && c.range.load(Acquire) != 0)
        {
            if now.saturating_sub(c.read_at.load(Acquire)) > REFRESH_MS
                && !c.refreshing.swap(true, Acquire)
            {
                // Stamped as a claim: another namespace's claim must not take it meanwhile.
                c.claimed_at.store(now, Release);
                refresh(c, netns);
                c.refreshing.store(false, Release);
            }
            return NsPorts::of(c, netns);
        }
        let being_read = COPIES.iter().any(|c| {
            c.netns.load(Acquire) == netns
                && c.refreshing.load(Acquire)
                && now.saturating_sub(c.claimed_at.load(Acquire)) <= WAIT_MS
        });
        if !being_read && let Some(c) = claim(netns, now) {
            let ok = refresh(c, netns);
            c.refreshing.store(false, Release);
            return if ok { NsPorts::of(c, netns) } else { None };
        }
        if now.saturating_sub(start) > WAIT_MS {
            return None;
        }
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
    }
}

/// Gives an entry to namespace `netns` to read: the oldest one nobody is reading, unless
/// another thread took one for `netns` meanwhile. The caller reads it, then clears
/// `refreshing`.
fn claim(netns: u64, now: u64) -> Option<&'static Copy> {
    let held = CLAIMING.load(Acquire);
    let stale = held != 0 && now.saturating_sub(held - 1) > WAIT_MS;
    if (held != 0 && !stale)
        || CLAIMING
            .compare_exchange(held, now + 1, Acquire, Relaxed)
            .is_err()
    {
        return None;
    }
    let unfinished = |c: &Copy| now.saturating_sub(c.claimed_at.load(Acquire)) > WAIT_MS;
    let reading = |c: &Copy| c.refreshing.load(Acquire) && !unfinished(c);
    let taken = COPIES
        .iter()
        .any(|c| c.netns.load(Acquire) == netns && (c.range.load(Acquire) != 0 || reading(c)));
    let c = COPIES
        .iter()
        .filter(|c| !reading(c))
        .min_by_key(|c| c.read_at.load(Acquire))
        .filter(|_| !taken);
    if let Some(c) = c {
        c.claimed_at.store(now, Release);
        c.refreshing.store(true, Release);
        c.range.store(0, Release);
        c.netns.store(netns, Release);
    }
    CLAIMING.store(0, Release);
    c
}

impl NsPorts {
    /// None: the copy was given to another namespace this moment (nothing read yet).
    fn of(copy: &'static Copy, netns: u64) -> Option<NsPorts> {
        let r = copy.range.load(Acquire);
        (r != 0).then_some(NsPorts {
            copy,
            netns,
            range: (r as u16, (r >> 16) as u16),
        })
    }

    pub fn range(&self) -> (u16, u16) {
        self.range
    }

    pub fn is_reserved(&self, port: u16) -> bool {
        self.copy.netns.load(Acquire) == self.netns
            && self.copy.reserved[port as usize / 64].load(Relaxed) & (1 << (port % 64)) != 0
    }
}

/// In the child after fork: a refresh that another thread of the parent had under way will never
/// finish here.
pub fn after_fork_in_child() {
    for c in &COPIES {
        c.refreshing.store(false, Release);
    }
    CLAIMING.store(0, Release);
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

    /// Each read of the /proc files takes this long here: a reader that other threads must wait
    /// for, as on a busy or emulated machine (the kernel lane on 6.1 met it).
    pub const READ_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

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
    fn reserved_ports_are_replaced_word_by_word() {
        let c: &'static Copy = Box::leak(Box::new(Copy {
            netns: AtomicU64::new(7),
            range: AtomicU32::new(0),
            read_at: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            claimed_at: AtomicU64::new(0),
            reserved: [const { AtomicU64::new(0) }; 1024],
        }));
        c.range.store(1, Relaxed);
        let p = NsPorts::of(c, 7).unwrap();
        store_reserved(c, b"11,14-18,200-300,65535\n");
        let got: Vec<u16> = (0..=65535).filter(|&q| p.is_reserved(q)).collect();
        let want: Vec<u16> = [11, 14, 15, 16, 17, 18]
            .into_iter()
            .chain(200..=300)
            .chain([65535])
            .collect();
        assert_eq!(got, want);
        store_reserved(c, b"300,12,40000\n");
        let got: Vec<u16> = (0..=65535).filter(|&q| p.is_reserved(q)).collect();
        assert_eq!(
            got,
            vec![12, 300, 40000],
            "the old list is gone, out of order kept"
        );
        store_reserved(c, b"\n");
        assert!((0..=65535).all(|q| !p.is_reserved(q)));
        c.netns.store(8, Relaxed);
        store_reserved(c, b"5");
        assert!(!p.is_reserved(5), "an entry given to another namespace");
    }

    /// Threads that all need the namespace's first copy at once: every one gets it, and the
    /// namespace's real range (none answered "cannot read", none a copy zeroed by another's
    /// claim).
    #[test]
    fn threads_asking_at_once_all_get_the_range() {
        let mut buf = [0u8; 64];
        let n = read_proc(b"/proc/sys/net/ipv4/ip_local_port_range\0", &mut buf).unwrap();
        let want = parse_range(&buf[..n]).unwrap();
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        let netns = crate::udp::exhausted::netns_cookie(fd);
        unsafe { libc::close(fd) };
        for round in 0..20u64 {
            // No copy yet, each round.
            for c in &COPIES {
                c.range.store(0, Release);
                c.netns.store(0, Release);
            }
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(32));
            let got: Vec<_> = (0..32)
                .map(|_| {
                    let b = barrier.clone();
                    std::thread::spawn(move || {
                        b.wait();
                        in_namespace(netns).map(|p| p.range())
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert!(
                got.iter().all(|g| *g == Some(want)),
                "round {round}: {got:?}"
            );
        }
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
