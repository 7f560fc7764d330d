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
use crate::netlink::{DumpLease, Dumped, Ns, TCP_CLOSE, TCP_ESTABLISHED};
use crate::sockopt::set_noport;
use crate::state::Sock;
use crate::sys;
use libc::c_int;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

const ENTRIES: usize = 4;
/// A view is built again when older than this…
pub const TTL_MS: u64 = 1000;
/// …and used, while its successor is built, for at most this long.
const MAX_AGE_MS: u64 = 5000;
const WORDS: usize = 65536 / 64;

struct View {
    /// Bumped when `current` flips (a reader's handle then goes stale) or the key changes.
    generation: AtomicU64,
    netns: AtomicU64,
    addr: [AtomicU64; 4],
    /// When the current bitmap was built (0: none yet).
    built_ms: AtomicU64,
    /// When the entry was given to its key.
    claimed_ms: AtomicU64,
    /// Which of `bits` readers use; the other is the one being built.
    current: AtomicU32,
    /// One bit per port: some socket on it does not consent.
    bits: [[AtomicU64; WORDS]; 2],
    /// While a view is built: the ports seen so far with a socket that consents.
    seen: [AtomicU64; WORDS],
}

static VIEWS: [View; ENTRIES] = [const {
    View {
        generation: AtomicU64::new(0),
        netns: AtomicU64::new(0),
        addr: [const { AtomicU64::new(0) }; 4],
        built_ms: AtomicU64::new(0),
        claimed_ms: AtomicU64::new(0),
        current: AtomicU32::new(0),
        bits: [const { [const { AtomicU64::new(0) }; WORDS] }; 2],
        seen: [const { AtomicU64::new(0) }; WORDS],
    }
}; ENTRIES];

/// The build under way (one per process: one dump socket), guarded by the dump lease: which
/// entry + 1 (0 = none), the family being dumped (0: IPv4, 1: IPv6), when it started, the uid.
static BUILD_ENTRY: AtomicU32 = AtomicU32::new(0);
static BUILD_STAGE: AtomicU32 = AtomicU32::new(0);
static BUILD_START_MS: AtomicU64 = AtomicU64::new(0);
static BUILD_GENERATION: AtomicU64 = AtomicU64::new(0);
/// When a slice of the build under way was last read.
static BUILD_TOUCH_MS: AtomicU64 = AtomicU64::new(0);
/// A build nobody read a slice of for this long is left behind (`build_slice`).
const IDLE_BUILD_MS: u64 = 20;
/// Keys are claimed one at a time.
static CLAIMING: AtomicBool = AtomicBool::new(false);

/// A view as one search sees it.
#[derive(Clone, Copy, Debug)]
pub struct Handle {
    index: usize,
    generation: u64,
    /// No view was complete yet: what the build has read so far. A port it shows may be shared
    /// only after a look at that port alone (`lock`: a dump filtered on the port).
    pub partial: bool,
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
    match (at.as_v4(), holder_v4, at) {
        (Some(a), Some(h), _) => a == h,
        (None, None, SockAddr::V6 { ip, .. }) => ip == holder,
        _ => false,
    }
}

/// The consent rule for one socket on a port (module doc): a marked flow of this user, or one
/// of connectx's own moments on a port it shares: the lock between its bind and its connect
/// (marked at once, unconnected; the port is locked meanwhile), a sentinel (connected to the
/// peer's port 0, `shared`).
pub fn consents(d: &Dumped, uid: u32) -> bool {
    d.uid == uid
        && (d.no_port == Some(true) && matches!(d.state, TCP_ESTABLISHED | TCP_CLOSE)
            || d.state == TCP_ESTABLISHED && d.remote_port == 0)
}

fn key_matches(v: &View, netns: u64, at: &[u64; 4]) -> bool {
    v.netns.load(Acquire) == netns && v.addr.iter().zip(at).all(|(w, a)| w.load(Acquire) == *a)
}

/// The view for (`netns`, `at`): its current bitmap if one was built within `MAX_AGE_MS`. A view
/// older than `TTL_MS` (or none) is built meanwhile, a slice per call: this call reads the dump
/// for at most `budget_ns` (the kernel's own EAGAIN is the measure: module doc). None: no view
/// yet (the lock then binds nothing that is held).
pub fn view(sock: c_int, netns: u64, at: &SockAddr, budget_ns: u64) -> Option<Handle> {
    let key = at.with_port(0).to_words();
    let now = sys::now_ms();
    let deadline = sys::now_ns().saturating_add(budget_ns);
    // The entry can change under this call: a build finishing (a new generation), or, with more
    // than ENTRIES keys in use at once, the entry given to another key. Looked at again then
    // (a few times, or within the budget), never answered "no view" for it.
    for tries in 0.. {
        let out_of_time = tries >= 4 && sys::now_ns() >= deadline;
        let Some(index) = entry_for(netns, &key, now, deadline) else {
            crate::debug!("UDP lock: no entry for the view of {at} (others being claimed)");
            return None;
        };
        match look(sock, netns, at, &key, index, deadline, now) {
            Look::Found(h) => return h,
            // SAFETY: no arguments.
            Look::Changed if !out_of_time => unsafe {
                libc::sched_yield();
            },
            Look::Changed => {
                crate::debug!("UDP lock: the view of {at} kept changing while it was looked at");
                return None;
            }
        }
    }
    None
}

/// The entry of (`netns`, `key`), claimed for it if it has none. Another thread claiming one
/// this moment: looked at again (64 times, or until `deadline`: a claimer that does not run for
/// a while, on a busy machine, is waited for).
fn entry_for(netns: u64, key: &[u64; 4], now: u64, deadline: u64) -> Option<usize> {
    for tries in 0.. {
        let found = VIEWS
            .iter()
            .position(|v| key_matches(v, netns, key))
            .or_else(|| claim(netns, key, now));
        if found.is_some() || tries >= 64 && sys::now_ns() >= deadline {
            return found;
        }
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
    }
    None
}

enum Look {
    /// The answer: a complete view, what a build read so far, or None (no view yet).
    Found(Option<Handle>),
    /// The entry changed while it was looked at: look again.
    Changed,
}

/// Entry `index` for `key`: waits (within `deadline`) for a first build under way, reading
/// slices of it when the dump is free.
fn look(
    sock: c_int,
    netns: u64,
    at: &SockAddr,
    key: &[u64; 4],
    index: usize,
    deadline: u64,
    now: u64,
) -> Look {
    let v = &VIEWS[index];
    let mut first = true;
    loop {
        if !key_matches(v, netns, key) {
            return Look::Changed;
        }
        let built = v.built_ms.load(Acquire);
        if built != 0 && (now.saturating_sub(built) <= TTL_MS || !first) {
            break; // fresh, or an older one to use while the next is built
        }
        build_slice(sock, netns, index, at, deadline);
        first = false;
        // No view yet and another thread of this process is reading the dump: wait for its
        // slice (within this connect's budget) rather than refuse for want of a view.
        if v.built_ms.load(Acquire) != 0 || sys::now_ns() >= deadline {
            break;
        }
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
    }
    let generation = v.generation.load(Acquire);
    let built = v.built_ms.load(Acquire);
    let building = BUILD_ENTRY.load(Acquire) as usize;
    if !key_matches(v, netns, key) || v.generation.load(Acquire) != generation {
        return Look::Changed;
    }
    if built != 0 && now.saturating_sub(built) <= MAX_AGE_MS {
        return Look::Found(Some(Handle {
            index,
            generation,
            partial: false,
        }));
    }
    // None complete yet (the first build of this key, larger than one slice): what was read so
    // far, so that a connect that can share is not refused for want of the rest (the lock looks
    // at a port alone before it binds it).
    Look::Found((building == index + 1).then_some(Handle {
        index,
        generation,
        partial: true,
    }))
}

/// Gives an entry to a new key: the one used longest ago (built, or claimed and waiting for its
/// first build) that is not being built. A key claimed a moment ago keeps its entry while its
/// first build waits for the dump (two keys at once used to take each other's entry, each
/// left without a view: issue 17, the kernel lane on 6.1).
fn claim(netns: u64, key: &[u64; 4], now: u64) -> Option<usize> {
    if CLAIMING.swap(true, Acquire) {
        return None;
    }
    // Another thread may have claimed one for this key since this one looked.
    if let Some(i) = VIEWS.iter().position(|v| key_matches(v, netns, key)) {
        CLAIMING.store(false, Release);
        return Some(i);
    }
    let building = BUILD_ENTRY.load(Acquire) as usize;
    let index = (0..ENTRIES)
        .filter(|&i| i + 1 != building)
        .min_by_key(|&i| {
            let v = &VIEWS[i];
            v.built_ms.load(Relaxed).max(v.claimed_ms.load(Relaxed))
        });
    if let Some(i) = index {
        let v = &VIEWS[i];
        v.built_ms.store(0, Release);
        v.claimed_ms.store(now.max(1), Release);
        v.generation.fetch_add(1, AcqRel);
        v.netns.store(netns, Release);
        for (w, k) in v.addr.iter().zip(key) {
            w.store(*k, Release);
        }
    }
    CLAIMING.store(false, Release);
    index
}

/// Reads the dump for entry `index` until `deadline` (ns, `sys::now_ns`; at least one part);
/// flips the view when it is done.
fn build_slice(sock: c_int, netns: u64, index: usize, at: &SockAddr, deadline: u64) {
    let Some(lease) = DumpLease::take() else {
        return; // another thread of this process is reading a dump: it carries the build on
    };
    // The time now, not when the caller's view began: a connect that waits for a first view
    // (up to a second) must see another key's build go idle meanwhile. With the caller's start
    // time it never did, and two keys' first connects could wait each other out into a false
    // EAGAIN (the kernel lane on 6.12: the threads of one key waiting on a build the other key's
    // threads had left).
    let now_ms = sys::now_ms();
    let v = &VIEWS[index];
    let building = BUILD_ENTRY.load(Acquire) as usize;
    let stale_build = now_ms.saturating_sub(BUILD_START_MS.load(Acquire)) > MAX_AGE_MS;
    if building != index + 1 || BUILD_GENERATION.load(Acquire) != v.generation.load(Acquire) {
        // Another key's build under way finishes first, unless this key has no view to use
        // meanwhile and nobody is carrying that build on: then it is dropped (its key keeps
        // its previous view, and builds again when next asked). A build goes on only while
        // its key's connects run: one left unfinished (a program that filled one namespace's
        // range and moved to another, or any dump longer than a connect's slice, as under
        // emulation) would otherwise leave every other key without a view, each of its
        // connects refused, for `MAX_AGE_MS`. One being read (within `IDLE_BUILD_MS`) is not
        // dropped: two keys busy at once would restart each other's builds for ever.
        let built = v.built_ms.load(Acquire);
        let usable = built != 0 && now_ms.saturating_sub(built) <= MAX_AGE_MS;
        let idle = now_ms.saturating_sub(BUILD_TOUCH_MS.load(Acquire)) > IDLE_BUILD_MS;
        if building != 0 && !stale_build && (usable || !idle) {
            return;
        }
        if building != 0 && building != index + 1 {
            crate::debug!(
                "UDP lock: the view of another address or namespace, unfinished, is dropped for this one's"
            );
        }
        // A new build of this entry: the bitmap readers do not use, cleared.
        let next = 1 - v.current.load(Acquire) as usize;
        for w in v.bits[next].iter().chain(&v.seen) {
            w.store(0, Relaxed);
        }
        if let Err(e) = lease.start(Ns::of_known(sock, netns), libc::AF_INET) {
            crate::debug!("UDP lock: the dump for the view could not start (errno {e})");
            BUILD_ENTRY.store(0, Release);
            return;
        }
        BUILD_ENTRY.store(index as u32 + 1, Release);
        BUILD_STAGE.store(0, Release);
        BUILD_START_MS.store(now_ms, Release);
        BUILD_GENERATION.store(v.generation.load(Acquire), Release);
    }
    BUILD_TOUCH_MS.store(now_ms, Release);
    let next = 1 - v.current.load(Acquire) as usize;
    // SAFETY: no arguments.
    let uid = unsafe { libc::geteuid() };
    let mut more = || sys::now_ns() < deadline;
    let mut mark = |d: &Dumped| {
        let p = d.local_port as usize;
        if consents(d, uid) {
            v.seen[p / 64].fetch_or(1 << (p % 64), Relaxed);
        } else if overlaps(at, d.family, &d.local_ip) {
            v.bits[next][p / 64].fetch_or(1 << (p % 64), Relaxed);
        }
    };
    loop {
        match lease.read(&mut more, &mut mark) {
            Ok(false) => return,
            Ok(true) if BUILD_STAGE.load(Acquire) == 0 => {
                // IPv6 holders too: a dual-stack socket on the port conflicts with the lock's.
                if let Err(e) = lease.start(Ns::of_known(sock, netns), libc::AF_INET6) {
                    crate::debug!(
                        "UDP lock: the IPv6 dump for the view could not start (errno {e})"
                    );
                    BUILD_ENTRY.store(0, Release);
                    return;
                }
                // At least one part of it now (the IPv6 table is often small: done at once).
                BUILD_STAGE.store(1, Release);
            }
            Ok(true) => {
                // Done: readers move to the new bitmap (their older handles go stale).
                v.current.store(next as u32, Release);
                v.built_ms
                    .store(BUILD_START_MS.load(Acquire).max(1), Release);
                v.generation.fetch_add(1, AcqRel);
                BUILD_ENTRY.store(0, Release);
                return;
            }
            Err(e) => {
                crate::debug!("UDP lock: the dump for the view was lost (errno {e})");
                BUILD_ENTRY.store(0, Release);
                return;
            }
        }
    }
}

/// May the lock bind into `port`? None: the view changed under the search (ask `view` again).
pub fn allows(h: Handle, port: u16) -> Option<bool> {
    let v = &VIEWS[h.index];
    let (p, bit) = (port as usize / 64, 1u64 << (port % 64));
    let allowed = if h.partial {
        let building = 1 - v.current.load(Acquire) as usize;
        v.seen[p].load(Relaxed) & bit != 0 && v.bits[building][p].load(Relaxed) & bit == 0
    } else {
        v.bits[v.current.load(Acquire) as usize][p].load(Relaxed) & bit == 0
    };
    let same = v.generation.load(Acquire) == h.generation
        && (!h.partial || BUILD_ENTRY.load(Acquire) as usize == h.index + 1);
    same.then_some(allowed)
}

/// Before a sentinel binds a port connectx shares (`shared`): false only when a complete view
/// of this namespace says a socket on the port did not consent. No view (the lock has not run
/// here lately), nothing is asked: a reconnect while ports are free pays for no dump.
pub fn known_to_consent(fd: c_int, r: &Sock, local: &SockAddr) -> bool {
    let netns = r.netns.load(Acquire);
    let at = super::flow::wildcard(r);
    let key = at.to_words();
    if netns == 0
        || !VIEWS
            .iter()
            .any(|v| key_matches(v, netns, &key) && v.built_ms.load(Acquire) != 0)
    {
        return true;
    }
    match view(fd, netns, &at, 0) {
        Some(h) if !h.partial => allows(h, local.port()) != Some(false),
        _ => true,
    }
}

/// Marks a flow whose port connectx opens to sharing (module doc): one setsockopt, after the
/// SO_REUSEPORT of the unlock. Undone where the program's value is put back (a disconnect).
pub fn mark(fd: c_int, r: &Sock) {
    let _ = set_noport(fd, r, true);
}

/// Is any port of `range` (reserved ports aside) open to the lock? A bitmap scan, no system
/// call: a range held only by sockets that may not be shared answers EAGAIN at once.
pub fn any_allowed(h: Handle, range: (u16, u16), ports: crate::ports::NsPorts) -> bool {
    (range.0..=range.1).any(|p| allows(h, p) != Some(false) && !ports.is_reserved(p))
}

/// In the child after fork: a build of the parent's (its dump socket is gone) starts afresh, and
/// a key claim that another thread of the parent had under way is over.
pub fn after_fork_in_child() {
    BUILD_ENTRY.store(0, Release);
    CLAIMING.store(false, Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumped(state: u8, uid: u32, no_port: Option<bool>) -> Dumped {
        Dumped {
            family: libc::AF_INET,
            state,
            local_port: 40000,
            remote_port: 53,
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
            !consents(&dumped(7, 5, Some(false)), 5),
            "unconnected: a server"
        );
        assert!(consents(&dumped(7, 5, Some(true)), 5), "the lock at work");
        let mut sentinel = dumped(TCP_ESTABLISHED, 5, Some(false));
        sentinel.remote_port = 0;
        assert!(
            consents(&sentinel, 5),
            "a sentinel (connected to the peer's port 0)"
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

    /// Two keys whose first lock connects come at once (a program's bound and unbound sockets):
    /// each keeps its entry while its first build waits for the dump.
    #[test]
    fn two_keys_claimed_at_once_keep_their_entries() {
        let (a, b, ns) = ([1, 0, 0, 0], [2, 0, 0, 0], 0x5eed);
        let i = claim(ns, &a, 1000).unwrap();
        let j = claim(ns, &b, 1000).unwrap();
        assert_ne!(
            i, j,
            "the second key took the first one's entry before its first build"
        );
        assert!(key_matches(&VIEWS[i], ns, &a) && key_matches(&VIEWS[j], ns, &b));
        assert_eq!(claim(ns, &a, 1001), Some(i), "a key with an entry keeps it");
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
