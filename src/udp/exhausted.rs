//! Remembers, for a second, that the kernel found no free UDP port for a source: the kernel's
//! EAGAIN costs a scan of the whole range (~250 µs at 1,000 ports, ~620 µs at 15,000), so while
//! the range stays full a connect goes to the lock directly. Keyed by (network namespace, bound
//! address, the socket's own range). A port released meanwhile is still found: the lock's search
//! takes free ports as well as shared ones. Lock-free and static; a collision of two keys only
//! sends a connect to the lock a second early.

use crate::state::*;
use crate::sys;
use std::sync::atomic::{AtomicU64, Ordering::*};

const ENTRIES: usize = 8;
const TTL_MS: u64 = 1000;
const SO_NETNS_COOKIE: libc::c_int = 71;

static LAST_MS: AtomicU64 = AtomicU64::new(0);
static KEYS: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];
static AT_MS: [AtomicU64; ENTRIES] = [const { AtomicU64::new(0) }; ENTRIES];

/// SO_NETNS_COOKIE (Linux 5.14+); 0 where the kernel has none (then one key per process).
fn netns_cookie(fd: libc::c_int) -> u64 {
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

fn key(fd: libc::c_int, r: &Sock) -> u64 {
    let addr = r
        .app_addr()
        .filter(|_| r.any(DEFERRED))
        .map_or([0; 4], |a| a.with_port(0).to_words());
    let words = [
        netns_cookie(fd),
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

/// Did the kernel run out of ports for this socket's source within the last second? No system
/// call unless some range was full lately.
pub fn recent(fd: libc::c_int, r: &Sock) -> bool {
    let now = sys::now_ms();
    let last = LAST_MS.load(Acquire);
    if last == 0 || now.saturating_sub(last) > TTL_MS {
        return false;
    }
    let k = key(fd, r);
    let i = k as usize % ENTRIES;
    KEYS[i].load(Acquire) == k && now.saturating_sub(AT_MS[i].load(Acquire)) <= TTL_MS
}

/// The kernel just answered EAGAIN for this socket's source.
pub fn note(fd: libc::c_int, r: &Sock) {
    let now = sys::now_ms().max(1);
    let k = key(fd, r);
    let i = k as usize % ENTRIES;
    AT_MS[i].store(now, Release);
    KEYS[i].store(k, Release);
    LAST_MS.store(now, Release);
}
