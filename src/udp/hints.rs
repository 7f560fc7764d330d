//! What this process knows about its own UDP flows to busy destinations, so the lock stays cheap
//! when a destination's 4-tuples fill up (BENCHMARKS.md "near exhaustion"):
//! - a destination gets a slot the first time this process loses a race for it;
//! - from then on, the local ports this process connects to it are marked (and unmarked when the
//!   socket closes or disconnects): the lock skips them without asking the kernel;
//! - for a second after a lost race, the lock asks SOCK_DIAG before binding (a bind to a port
//!   that carries another flow to the destination costs a socket swap).
//!
//! Hints only: a stale mark can only make the lock skip a free port, and the lock makes a last
//! pass without marks before it answers EAGAIN. Lock-free, static (16 × 8 KiB, mapped lazily by
//! the kernel as pages are touched), no allocation.

use crate::addr::SockAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

const SLOTS: usize = 16;
const WORDS: usize = 65536 / 64;
const BUSY_MS: u64 = 1000;

struct Dest {
    /// Odd while the slot changes destination; a change invalidates older handles.
    generation: AtomicU32,
    key: [AtomicU64; 4],
    lost_at_ms: AtomicU64,
    ports: [AtomicU64; WORDS],
}

static DESTS: [Dest; SLOTS] = [const {
    Dest {
        generation: AtomicU32::new(0),
        key: [const { AtomicU64::new(0) }; 4],
        lost_at_ms: AtomicU64::new(0),
        ports: [const { AtomicU64::new(0) }; WORDS],
    }
}; SLOTS];

/// A destination's slot as seen at one moment.
#[derive(Clone, Copy)]
pub struct Slot {
    index: usize,
    generation: u32,
}

fn key_of(dst: &SockAddr) -> [u64; 4] {
    dst.to_words()
}

/// The slot of `dst`, if this process has lost a race for it.
pub fn find(dst: &SockAddr) -> Option<Slot> {
    let key = key_of(dst);
    DESTS.iter().enumerate().find_map(|(index, d)| {
        let generation = d.generation.load(Acquire);
        let same = generation & 1 == 0
            && generation != 0
            && d.key.iter().zip(key).all(|(w, k)| w.load(Relaxed) == k);
        same.then_some(Slot { index, generation })
    })
}

fn live(s: Slot) -> Option<&'static Dest> {
    let d = &DESTS[s.index];
    (d.generation.load(Acquire) == s.generation).then_some(d)
}

/// A race for `dst` was lost: give it a slot (displacing whichever destination hashed there)
/// and remember when.
pub fn lost_race(dst: &SockAddr, now_ms: u64) -> Option<Slot> {
    let slot = find(dst).or_else(|| claim(dst))?;
    live(slot)?.lost_at_ms.store(now_ms, Relaxed);
    Some(slot)
}

fn claim(dst: &SockAddr) -> Option<Slot> {
    let key = key_of(dst);
    let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        (h ^ w).wrapping_mul(0x0100_0000_01b3)
    });
    let index = (h >> 40) as usize % SLOTS;
    let d = &DESTS[index];
    let g = d.generation.load(Acquire);
    if g & 1 == 1
        || d.generation
            .compare_exchange(g, g + 1, Acquire, Relaxed)
            .is_err()
    {
        return None; // someone else is changing it: no hint this time
    }
    for w in &d.ports {
        w.store(0, Relaxed);
    }
    for (w, k) in d.key.iter().zip(key) {
        w.store(k, Relaxed);
    }
    d.lost_at_ms.store(0, Relaxed);
    d.generation.store(g + 2, Release);
    Some(Slot {
        index,
        generation: g + 2,
    })
}

/// True for a second after a lost race: ask SOCK_DIAG before binding.
pub fn busy(s: Option<Slot>, now_ms: u64) -> bool {
    s.and_then(live)
        .is_some_and(|d| now_ms.saturating_sub(d.lost_at_ms.load(Relaxed)) <= BUSY_MS)
}

/// True if this process holds a flow from `port` to the slot's destination.
pub fn mine(s: Option<Slot>, port: u16) -> bool {
    s.and_then(live)
        .is_some_and(|d| d.ports[port as usize / 64].load(Relaxed) & (1 << (port % 64)) != 0)
}

/// Marks `port` as holding a flow to the slot's destination. Returns the handle to give back to
/// `unmark` (0 = nothing marked).
pub fn mark(s: Option<Slot>, port: u16) -> u64 {
    let Some(s) = s else { return 0 };
    let Some(d) = live(s) else { return 0 };
    d.ports[port as usize / 64].fetch_or(1 << (port % 64), Relaxed);
    (s.index as u64 + 1) | (s.generation as u64) << 8 | (port as u64) << 40
}

/// The flow marked under `handle` has ended (close, disconnect).
pub fn unmark(handle: u64) {
    let Some(index) = ((handle & 0xff) as usize)
        .checked_sub(1)
        .filter(|&i| i < SLOTS)
    else {
        return;
    };
    let s = Slot {
        index,
        generation: (handle >> 8) as u32,
    };
    let port = (handle >> 40) as u16;
    if let Some(d) = live(s) {
        d.ports[port as usize / 64].fetch_and(!(1 << (port % 64)), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_follow_the_destination_and_expire_with_it() {
        let dst = SockAddr::V4 {
            ip: [203, 0, 113, 9],
            port: 53,
        };
        assert!(find(&dst).is_none());
        let s = lost_race(&dst, 10_000);
        assert!(s.is_some());
        assert!(busy(s, 10_500) && !busy(s, 11_500));
        let h = mark(s, 40_001);
        assert!(mine(find(&dst), 40_001) && !mine(find(&dst), 40_002));
        unmark(h);
        assert!(!mine(find(&dst), 40_001));
        // a handle from an older generation of the slot does not clear a newer mark
        let old = mark(s, 40_003);
        let slot = s.unwrap();
        DESTS[slot.index].generation.fetch_add(2, Release);
        let now = find(&dst);
        mark(now, 40_003);
        unmark(old);
        assert!(mine(now, 40_003));
    }
}
