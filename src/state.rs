//! Per-socket state, shared by every fd that refers to the socket (dup), lock-free.
//!
//! Two tables, both made of chunks mapped on first use with mmap (async-signal-safe; no malloc):
//! - the fd map: fd number -> record index + 1 (0 = not ours);
//! - the records: one per managed socket, with a count of the fds that point at it.
//!
//! Everything is an atomic, so a hook never blocks: not in a signal handler, not in a child
//! forked while another thread was inside a hook, not after vfork (PITFALLS 5). Every call that
//! returns a new fd (socket, accept, dup…) first drops whatever the map held for that number,
//! so state left behind by a close that bypassed us (libuv, raw syscall) is never applied to a
//! new socket (PITFALLS 2). fds at or above `MAX_FDS` are not managed (they pass through).

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

const CHUNK: usize = 4096;
const CHUNKS: usize = 256;
pub const MAX_FDS: usize = CHUNK * CHUNKS;

// Socket facts, one bit each (the port's phase is one value: `Phase`).
pub const TCP: u32 = 1 << 0;
pub const UDP: u32 = 1 << 1;
pub const V6: u32 = 1 << 2;
/// The program's own values of the options we change behind its back.
pub const APP_REUSEADDR: u32 = 1 << 3;
pub const APP_REUSEPORT: u32 = 1 << 4;
pub const APP_NOPORT: u32 = 1 << 5;
/// The values the kernel holds now (as far as we set or passed them).
pub const K_REUSEADDR: u32 = 1 << 6;
pub const K_REUSEPORT: u32 = 1 << 7;
pub const K_NOPORT: u32 = 1 << 8;
pub const CONNECTED: u32 = 1 << 11;
/// UDP: the program set an option that routing may depend on (SO_MARK, IP_TOS, IPV6_TCLASS,
/// SO_BINDTODEVICE): the lock asks the route with the socket's own values.
pub const CONTEXT: u32 = 1 << 13;

/// A fork child's copy of a socket that another thread of the parent was connecting at the
/// fork: the K_* bits may be a moment behind the kernel's (that thread finished its work in
/// the parent, on the same socket), so its next connect reads them again (`sockopt::resync`).
pub const RESYNC: u32 = 1 << 19;

/// Where a socket's port stands: one value per socket, changed only by `Sock::enter`, whose
/// graph `Phase::may_become` is (issue 17). Whether the socket is connected is a fact beside it
/// (CONNECTED), as are the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Phase {
    /// No port of ours to look after: not bound yet, or connected on a port the kernel picked at
    /// connect (TCP after a deferred bind).
    Free = 0,
    /// Bound with our IP_BIND_ADDRESS_NO_PORT: the address kept by the kernel, the port chosen
    /// later (TCP: by the kernel at connect; UDP: where the kernel had no free port, the lock).
    Deferred = 1,
    /// UDP: the program set IP_BIND_ADDRESS_NO_PORT itself before bind(ip, 0): its own deferral,
    /// which the kernel keeps until connect or send (nothing to carry out for getsockname).
    ProgramDeferred = 2,
    /// Deferred, and the port the kernel had picked went back (a UDP disconnect, a TCP connect
    /// that failed after the pick): nothing binds it for getsockname or a receive.
    Released = 3,
    /// bind(ip, P) found P held only by connectx flows or connections: not bound yet; connect
    /// binds P (shared) only if P's 4-tuple to the destination is free; getsockname shows P;
    /// listen, a send or a receive bind it exclusively.
    Pending = 4,
    /// The socket has a port of its own: the kernel's (bind(ip, 0), a deferred bind carried out,
    /// a UDP autobind) or the program's fixed one (`app_addr` tells: its port is not 0).
    Bound = 5,
    /// UDP: bind(ip, 0) with the program's own SO_REUSEPORT: the kernel chose a free port (without
    /// the option, so never one of connectx's flows), then the option went on: the port's
    /// reuseport group is the program's own (a server's workers bind it after).
    Group = 6,
    /// UDP: a fixed port the program bound that connectx shares with other flows: every connect
    /// is checked against them.
    Shared = 7,
    /// UDP: a port connectx opened to sharing: the kernel's after its connect (the unlock), or
    /// the lock's (bound with port 0 in a one-port IP_LOCAL_PORT_RANGE, so a disconnect gives it
    /// back exactly as the kernel gives back an autobound port).
    Ours = 8,
    /// A server: from now on everything passes through.
    Listening = 9,
}

impl Phase {
    fn from_u32(v: u32) -> Phase {
        use Phase::*;
        [
            Free,
            Deferred,
            ProgramDeferred,
            Released,
            Pending,
            Bound,
            Group,
            Shared,
            Ours,
            Listening,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Free)
    }

    /// The socket owns a local port.
    pub fn has_port(self) -> bool {
        matches!(
            self,
            Phase::Bound | Phase::Group | Phase::Shared | Phase::Ours
        )
    }

    /// Bound to an address without a port yet (ours or the program's deferral, or released).
    pub fn deferred(self) -> bool {
        matches!(
            self,
            Phase::Deferred | Phase::ProgramDeferred | Phase::Released
        )
    }

    /// The transitions (the one place that says which exist):
    /// - Free -> Deferred | ProgramDeferred | Pending | Bound | Group | Shared | Ours | Listening
    ///   (a bind, a connect, an adopted inherited flow, listen);
    /// - Deferred -> Released | Bound | Ours | Free | Listening (the kernel gives the port back,
    ///   the bind is carried out, the lock connects, the kernel connects, listen);
    /// - ProgramDeferred -> Bound | Ours | Free | Listening;
    /// - Released -> Deferred | Bound | Ours | Free | Listening (bound again, used again);
    /// - Pending -> Free | Bound | Shared | Listening (dropped, bound exclusively, shared at
    ///   connect);
    /// - Bound | Group -> Ours | Shared | Free | Listening (opened at connect, shared, released
    ///   by a disconnect);
    /// - Shared -> Free | Bound;
    /// - Ours -> Free | Deferred (a reconnect whose 4-tuple is taken gives the port back);
    /// - Listening: final.
    ///
    /// And any phase to itself.
    pub fn may_become(self, next: Phase) -> bool {
        use Phase::*;
        self == next
            || match self {
                Free => next != Released,
                Deferred => matches!(next, Released | Bound | Ours | Free | Listening),
                ProgramDeferred => matches!(next, Bound | Ours | Free | Listening),
                Released => matches!(next, Deferred | Bound | Ours | Free | Listening),
                Pending => matches!(next, Free | Bound | Shared | Listening),
                Bound | Group => matches!(next, Ours | Shared | Free | Listening),
                Shared => matches!(next, Free | Bound),
                Ours => matches!(next, Free | Deferred),
                Listening => false,
            }
    }
}

#[repr(C)]
pub struct Sock {
    refs: AtomicU32,
    flags: AtomicU32,
    /// `Phase` as a number: changed only by `enter`.
    phase: AtomicU32,
    /// The program's IP_LOCAL_PORT_RANGE (lo | hi << 16), 0 when unset.
    pub port_range: AtomicU32,
    /// SO_COOKIE once known (0 = not asked yet).
    pub cookie: AtomicU64,
    /// SO_NETNS_COOKIE once known (0 = not asked yet): a socket never changes namespace.
    pub netns: AtomicU64,
    /// The UDP flow this socket holds in `udp::hints` (0 = none), given back when it ends.
    pub flow: AtomicU64,
    /// UDP: the thread running the lock on this socket (0 = none; see `udp::Busy`).
    pub busy: AtomicU64,
    /// The address the program bound (its port may be 0).
    app_addr: [AtomicU64; 4],
    /// The local address the socket owns once it has a port (HAS_PORT).
    local: [AtomicU64; 4],
}

impl Sock {
    pub fn flags(&self) -> u32 {
        self.flags.load(Acquire)
    }
    pub fn has(&self, bits: u32) -> bool {
        self.flags() & bits == bits
    }
    pub fn any(&self, bits: u32) -> bool {
        self.flags() & bits != 0
    }
    pub fn set(&self, bits: u32) {
        self.flags.fetch_or(bits, AcqRel);
    }
    pub fn clear(&self, bits: u32) {
        self.flags.fetch_and(!bits, AcqRel);
    }
    pub fn put(&self, bits: u32, on: bool) {
        if on { self.set(bits) } else { self.clear(bits) }
    }
    pub fn phase(&self) -> Phase {
        Phase::from_u32(self.phase.load(Acquire))
    }
    pub fn is(&self, p: Phase) -> bool {
        self.phase() == p
    }
    pub fn has_port(&self) -> bool {
        self.phase().has_port()
    }
    pub fn deferred(&self) -> bool {
        self.phase().deferred()
    }
    /// A record put back as it was (the supervisor keeps records between a program's calls): not
    /// a step of the socket's, so not checked against the graph.
    pub fn restore(&self, p: Phase) {
        self.phase.store(p as u32, Release);
    }
    /// The one place a socket's phase changes. A step outside `Phase::may_become` is a bug of
    /// ours: said at debug level (never a panic on the program's call), and taken all the same.
    pub fn enter(&self, next: Phase) {
        let now = self.phase();
        if !now.may_become(next) {
            crate::debug!("unexpected phase step {now:?} -> {next:?}");
        }
        self.phase.store(next as u32, Release);
    }
    /// More than one fd names this socket (dup).
    pub fn is_shared(&self) -> bool {
        self.refs.load(Acquire) > 1
    }
    pub fn is_tcp(&self) -> bool {
        self.any(TCP)
    }
    pub fn is_udp(&self) -> bool {
        self.any(UDP)
    }

    pub fn app_addr(&self) -> Option<crate::addr::SockAddr> {
        load_addr(&self.app_addr)
    }
    pub fn set_app_addr(&self, a: &crate::addr::SockAddr) {
        store_addr(&self.app_addr, a)
    }
    pub fn local(&self) -> Option<crate::addr::SockAddr> {
        load_addr(&self.local)
    }
    pub fn set_local(&self, a: &crate::addr::SockAddr) {
        store_addr(&self.local, a)
    }

    fn reset(&self, flags: u32) {
        self.port_range.store(0, Relaxed);
        self.cookie.store(0, Relaxed);
        self.netns.store(0, Relaxed);
        crate::udp::hints::unmark(self.flow.swap(0, Relaxed));
        self.busy.store(0, Relaxed);
        for a in self.app_addr.iter().chain(&self.local) {
            a.store(0, Relaxed);
        }
        self.phase.store(Phase::Free as u32, Relaxed);
        self.flags.store(flags, Release);
    }
}

fn load_addr(w: &[AtomicU64; 4]) -> Option<crate::addr::SockAddr> {
    crate::addr::SockAddr::from_words(std::array::from_fn(|i| w[i].load(Acquire)))
}

fn store_addr(w: &[AtomicU64; 4], a: &crate::addr::SockAddr) {
    for (slot, v) in w.iter().zip(a.to_words()) {
        slot.store(v, Release);
    }
}

/// An fd-map value with this bit is a managed socket that has no record yet: its other bits are
/// the socket's kind (TCP/UDP, V6). A TCP socket gets a record only when a call needs one (bind,
/// our options): socket + connect + close of a plain TCP client touch nothing else.
const LAZY: u32 = 1 << 31;

type FdChunk = [AtomicU32; CHUNK];
type RecChunk = [Sock; CHUNK];

static FD_MAP: [AtomicPtr<FdChunk>; CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];
static RECORDS: [AtomicPtr<RecChunk>; CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];

/// The chunk at `i`, mapped on first use when `create`. Zeroed memory is a valid chunk (all
/// atomics 0). Two threads racing to create one: the loser unmaps its copy.
#[inline]
fn chunk<T>(table: &[AtomicPtr<T>; CHUNKS], i: usize, create: bool) -> Option<&'static T> {
    let slot = table.get(i)?;
    let p = slot.load(Acquire);
    if !p.is_null() {
        // SAFETY: published chunks are never unmapped.
        return Some(unsafe { &*p });
    }
    if !create {
        return None;
    }
    let size = std::mem::size_of::<T>();
    // SAFETY: anonymous private mapping; no preconditions.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        return None;
    }
    match slot.compare_exchange(std::ptr::null_mut(), m.cast(), AcqRel, Acquire) {
        // SAFETY: we just published m, zero-filled, of the chunk's size.
        Ok(_) => Some(unsafe { &*m.cast::<T>() }),
        Err(other) => {
            // SAFETY: m is our own mapping, never published.
            unsafe { libc::munmap(m, size) };
            // SAFETY: other was published by the winner.
            Some(unsafe { &*other })
        }
    }
}

#[inline]
fn fd_slot(fd: i32, create: bool) -> Option<&'static AtomicU32> {
    let fd = usize::try_from(fd).ok().filter(|&f| f < MAX_FDS)?;
    chunk(&FD_MAP, fd / CHUNK, create).map(|c| &c[fd % CHUNK])
}

#[inline]
fn record(index: u32) -> Option<&'static Sock> {
    let i = index as usize;
    chunk(&RECORDS, i / CHUNK, false).map(|c| &c[i % CHUNK])
}

fn release(value: u32) {
    if value & LAZY != 0 {
        return;
    }
    if let Some(r) = value.checked_sub(1).and_then(record)
        && r.refs.fetch_sub(1, AcqRel) == 1
    {
        // The last fd of the socket is gone: so is its flow.
        crate::udp::hints::unmark(r.flow.swap(0, AcqRel));
    }
}

/// Claims a free record, trying the fd's own index first (so it is almost always free).
fn claim(hint: usize) -> Option<u32> {
    for step in 0..MAX_FDS.min(CHUNK * 4) {
        let i = (hint + step) % MAX_FDS;
        let c = chunk(&RECORDS, i / CHUNK, true)?;
        if c[i % CHUNK]
            .refs
            .compare_exchange(0, 1, AcqRel, Relaxed)
            .is_ok()
        {
            return Some(i as u32);
        }
    }
    None
}

/// The record of `fd`, if the library manages it and it has one.
#[inline]
pub fn get(fd: i32) -> Option<&'static Sock> {
    let v = fd_slot(fd, false)?.load(Acquire);
    if v & LAZY != 0 {
        return None;
    }
    record(v.checked_sub(1)?)
}

/// True for a managed socket that has no record yet (a TCP socket nothing happened to).
pub fn is_lazy(fd: i32) -> bool {
    fd_slot(fd, false).is_some_and(|s| s.load(Acquire) & LAZY != 0)
}

/// The record of `fd`, made now if the socket is managed but has none yet.
pub fn get_or_create(fd: i32) -> Option<&'static Sock> {
    let slot = fd_slot(fd, false)?;
    let v = slot.load(Acquire);
    if v & LAZY == 0 {
        return record(v.checked_sub(1)?);
    }
    let idx = claim(fd as usize)?;
    let r = record(idx)?;
    r.reset(v & !LAZY);
    match slot.compare_exchange(v, idx + 1, AcqRel, Acquire) {
        Ok(_) => Some(r),
        Err(now) => {
            // Another thread changed the number meanwhile: give the record back.
            release(idx + 1);
            if now & LAZY == 0 {
                now.checked_sub(1).and_then(record)
            } else {
                None
            }
        }
    }
}

/// `fd` is a new TCP or UDP socket: a UDP socket gets a fresh record with `flags` at once, a TCP
/// socket when it first needs one (`get_or_create`).
pub fn track(fd: i32, flags: u32) {
    let Some(slot) = fd_slot(fd, true) else {
        return;
    };
    if flags & TCP != 0 {
        release(slot.swap(LAZY | flags, AcqRel));
        return;
    }
    release(slot.swap(0, AcqRel));
    let Some(idx) = claim(fd as usize) else {
        return;
    };
    let Some(r) = record(idx) else { return };
    r.reset(flags);
    release(slot.swap(idx + 1, AcqRel));
}

/// `fd` is closed, or now refers to something we do not manage.
pub fn forget(fd: i32) {
    if let Some(slot) = fd_slot(fd, false) {
        release(slot.swap(0, AcqRel));
    }
}

/// `new` is a duplicate of `old`: both name the same socket and share its record.
pub fn dup(old: i32, new: i32) {
    if old == new {
        return;
    }
    // Two fds must share one record: a socket that has none yet gets it now.
    if is_lazy(old) {
        get_or_create(old);
    }
    let v = fd_slot(old, false).map_or(0, |s| s.load(Acquire));
    match v.checked_sub(1).filter(|_| v & LAZY == 0).and_then(record) {
        Some(r) => {
            r.refs.fetch_add(1, AcqRel);
            match fd_slot(new, true) {
                Some(slot) => release(slot.swap(v, AcqRel)),
                None => release(v),
            }
        }
        None => forget(new),
    }
}

/// close_range(first, last): forget every fd in the range that has a mapped chunk.
pub fn forget_range(first: u32, last: u32) {
    let last = (last as usize).min(MAX_FDS - 1);
    let mut fd = first as usize;
    while fd <= last {
        match chunk(&FD_MAP, fd / CHUNK, false) {
            Some(c) => {
                let end = last.min((fd / CHUNK + 1) * CHUNK - 1);
                for f in fd..=end {
                    release(c[f % CHUNK].swap(0, AcqRel));
                }
                fd = end + 1;
            }
            None => fd = (fd / CHUNK + 1) * CHUNK,
        }
    }
}

/// In a fork child (issue 16): the threads that held a socket's busy token (`udp::Busy`) are
/// the parent's and do not exist here. Only tokens that are set are written (the rest of the
/// table stays shared with the parent, copy-on-write).
pub fn after_fork_in_child() {
    for i in 0..CHUNKS {
        if let Some(c) = chunk(&RECORDS, i, false) {
            for r in c.iter().filter(|r| r.busy.load(Relaxed) != 0) {
                r.busy.store(0, Relaxed);
                r.set(RESYNC);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_socket_gets_its_record_when_first_needed() {
        track(100_050, TCP | V6);
        assert!(get(100_050).is_none() && is_lazy(100_050));
        let r = get_or_create(100_050).unwrap();
        assert!(r.has(TCP | V6));
        assert!(std::ptr::eq(get(100_050).unwrap(), r));
        // a dup shares the record, made at the dup if need be
        track(100_052, TCP);
        dup(100_052, 100_051);
        assert!(std::ptr::eq(get(100_051).unwrap(), get(100_052).unwrap()));
        forget(100_052);
        forget(100_050);
        forget(100_051);
        assert!(get(100_050).is_none() && !is_lazy(100_050) && !is_lazy(100_051));
    }

    #[test]
    fn dup_shares_one_record_and_close_keeps_the_other() {
        track(100_001, UDP);
        let r = get(100_001).unwrap();
        r.set(APP_REUSEPORT);
        dup(100_001, 100_002);
        assert!(get(100_002).unwrap().has(UDP | APP_REUSEPORT));
        forget(100_001);
        assert!(get(100_001).is_none());
        assert!(get(100_002).unwrap().has(APP_REUSEPORT));
        forget(100_002);
        assert!(get(100_002).is_none());
    }

    #[test]
    fn a_reused_fd_never_sees_stale_state() {
        track(100_010, UDP);
        get(100_010).unwrap().enter(Phase::Deferred);
        // closed behind our back, then a new TCP socket gets the same number
        track(100_010, TCP);
        let r2 = get_or_create(100_010).unwrap();
        assert!(r2.is_tcp() && !r2.any(UDP) && r2.is(Phase::Free));
        forget(100_010);
    }

    #[test]
    fn close_range_forgets_only_the_range() {
        for fd in 100_020..100_030 {
            track(fd, UDP);
        }
        forget_range(100_022, 100_027);
        assert!(get(100_021).is_some() && get(100_028).is_some());
        assert!((100_022..=100_027).all(|f| get(f).is_none()));
        forget_range(100_020, u32::MAX);
        assert!(get(100_029).is_none());
    }

    #[test]
    fn the_phase_graph_has_no_way_out_of_a_server_and_no_release_from_nothing() {
        use Phase::*;
        assert!(Free.may_become(Deferred) && Deferred.may_become(Released));
        assert!(!Free.may_become(Released));
        assert!(!Listening.may_become(Free) && Listening.may_become(Listening));
        assert!(Pending.may_become(Shared) && !Shared.may_become(Pending));
        assert!(Ours.may_become(Free) && !Ours.may_become(Bound));
        for v in 0..10 {
            assert_eq!(Phase::from_u32(v) as u32, v);
        }
    }

    #[test]
    fn fds_out_of_range_are_not_managed() {
        track(-1, UDP);
        track(MAX_FDS as i32, UDP);
        assert!(get(-1).is_none() && get(MAX_FDS as i32).is_none());
    }
}
