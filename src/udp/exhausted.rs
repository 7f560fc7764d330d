//! Two memories of a second each, keyed by (network namespace, bound address, the socket's own
//! range), lock-free and static:
//! - the kernel found no free UDP port for a source: its EAGAIN costs a scan of the whole range
//!   (~250 µs at 1,000 ports, ~620 µs at 15,000), so while the range stays full a connect goes
//!   to the lock directly. A port released meanwhile is still found: the lock's search takes
//!   free ports as well as shared ones. A collision of two keys only sends a connect to the lock
//!   a second early;
//! - the lock found no port it may share (every port held by sockets that did not consent,
//!   `consent`): the next connects make the kernel's own connect (which finds a port released
//!   meanwhile) and, on its EAGAIN, answer it without the lock: the kernel's own cost (issue 17,
//!   "bounded worst case"). A collision can only make a connect answer the kernel's EAGAIN.

use crate::state::*;
use crate::sys;
use std::sync::atomic::{AtomicU64, Ordering::*};

const ENTRIES: usize = 8;
const TTL_MS: u64 = 1000;
const SO_NETNS_COOKIE: libc::c_int = 71;

static LAST_MS: AtomicU64 = AtomicU64::new(0);
static KEYS: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
static AT_MS: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
/// How long the kernel took to answer that EAGAIN: the measure of what the lock may add.
static COST_NS: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
static NONE_LAST_MS: AtomicU64 = AtomicU64::new(0);
static NONE_KEYS: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
static NONE_AT_MS: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];

/// SO_NETNS_COOKIE (Linux 5.14+); 0 where the kernel has none (then one key per process).
pub fn netns_cookie(fd: libc::c_int) -> u64 {
    let _keep = sys::KeepErrno::new();
    let mut v: u64 = 0;
    let mut len = 8 as libc::socklen_t;
    // SAFETY: v and len are valid for writes of the sizes given.
    let r = unsafe {
        crate::real::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    if r == 0 { v } else { 0 }
}

/// The socket's network namespace (SO_NETNS_COOKIE), asked once per socket.
pub fn netns_of(fd: libc::c_int, r: &Sock) -> u64 {
    let known = r.netns.load(Acquire);
    if known != 0 {
        return known;
    }
    let n = netns_cookie(fd);
    r.netns.store(n, Release);
    n
}

fn key(fd: libc::c_int, r: &Sock) -> u64 {
    let addr = r
        .app_addr()
        .filter(|_| r.deferred())
        .map_or([0; 4], |a| a.with_port(0).to_words());
    let words = [
        netns_of(fd, r),
        addr[0],
        addr[1],
        addr[2],
        addr[3],
        r.port_range.load(Relaxed) as u64 | (r.any(V6) as u64) << 32,
    ];
    let h = words.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        (h ^ w).wrapping_mul(0x0100_0000_01b3)
    });
    h.max(1)
}

type Memory = (
    &'static AtomicU64,
    &'static [AtomicU64; ENTRIES],
    &'static [AtomicU64; ENTRIES],
);
const KERNEL_FULL: Memory = (&LAST_MS, &KEYS, &AT_MS);
const NOTHING_SHAREABLE: Memory = (&NONE_LAST_MS, &NONE_KEYS, &NONE_AT_MS);

fn recalls(m: Memory, fd: libc::c_int, r: &Sock) -> bool {
    let (last_ms, keys, at_ms) = m;
    let now = sys::now_ms();
    let last = last_ms.load(Acquire);
    if last == 0 || now.saturating_sub(last) > TTL_MS {
        return false;
    }
    let k = key(fd, r);
    let i = k as usize % ENTRIES;
    keys[i].load(Acquire) == k && now.saturating_sub(at_ms[i].load(Acquire)) <= TTL_MS
}

fn remember(m: Memory, fd: libc::c_int, r: &Sock) {
    let (last_ms, keys, at_ms) = m;
    let now = sys::now_ms().max(1);
    let k = key(fd, r);
    let i = k as usize % ENTRIES;
    at_ms[i].store(now, Release);
    keys[i].store(k, Release);
    last_ms.store(now, Release);
}

/// Did the kernel run out of ports for this socket's source within the last second? No system
/// call unless some range was full lately.
pub fn recent(fd: libc::c_int, r: &Sock) -> bool {
    recalls(KERNEL_FULL, fd, r)
}

/// The kernel just answered EAGAIN for this socket's source, after `cost_ns`.
pub fn note(fd: libc::c_int, r: &Sock, cost_ns: u64) {
    remember(KERNEL_FULL, fd, r);
    COST_NS[key(fd, r) as usize % ENTRIES].store(cost_ns, Release);
}

/// What the kernel's last EAGAIN for this socket's source cost (0: not known).
pub fn kernel_cost_ns(fd: libc::c_int, r: &Sock) -> u64 {
    let k = key(fd, r);
    let i = k as usize % ENTRIES;
    if KEYS[i].load(Acquire) == k {
        COST_NS[i].load(Acquire)
    } else {
        0
    }
}

/// Did the lock find no port it may share for this socket's source within the last second?
pub fn nothing_shareable(fd: libc::c_int, r: &Sock) -> bool {
    recalls(NOTHING_SHAREABLE, fd, r)
}

/// The lock just found no port it may share for this socket's source.
pub fn note_nothing_shareable(fd: libc::c_int, r: &Sock) {
    remember(NOTHING_SHAREABLE, fd, r)
}
