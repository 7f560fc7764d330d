//! The lock: a UDP connect the kernel could not give a port (it answered EAGAIN). The kernel
//! facts it rests on are pinned in tests/udp_kernel_first.rs, tests/udp.rs and KERNEL.md.
//!
//! For each candidate port P (random start and stride over the range, `ports::shuffled`):
//! 0. take P's turn (`PortTurn`, an abstract UNIX socket per namespace and port): one locker at
//!    a time on P, so that no check runs while another locker's connect is moving its socket
//!    between the kernel's hash chains (where a lookup misses it);
//! 1. bind port 0 on the program's address (or the wildcard) with SO_REUSEPORT and the
//!    socket's IP_LOCAL_PORT_RANGE set to [P, P]: the kernel takes P if every holder shares
//!    (same uid, SO_REUSEPORT) and honours its reserved ports; the port is not "user-locked",
//!    so a disconnect gives it back exactly as the kernel gives back an autobound port;
//! 2. clear SO_REUSEPORT: the lock, nobody can bind P now, with or without SO_REUSEADDR or
//!    SO_REUSEPORT;
//! 3. ask SOCK_DIAG (exact lookup, in the socket's namespace, on the interface replies come in
//!    by) whether a connected socket owns (source, P) <- destination: nobody else can have bound
//!    P meanwhile, so only a connected socket can; the source is the bound address or the
//!    route's, asked with the socket's context (`flow`);
//! 4. connect with our copy of the program's arguments, and check that the kernel took the
//!    source the check was about (getsockname; a rule the route query could not see is caught
//!    here: undone, and checked again with the kernel's source);
//! 5. set SO_REUSEPORT again: the unlock, P is open to other flows of the same user; drop what
//!    reached the socket meanwhile once more, and give the turn back.
//!
//! A lost check gives the port back (connect AF_UNSPEC) and goes on with the next port: no
//! fresh socket is ever swapped in. Every port taken, or 32 lost races: EAGAIN.
//!
//! Connects on a port connectx already shares are in `shared`; what both ask the kernel, in
//! `flow`.

use super::flow::{
    Check, Flow, check, connected, cookie, diag_failed, drain, flow_for, release, same_ip, wildcard,
};
use super::{Pass, Verdict, consent, exhausted, hints, lock_unavailable};
use crate::addr::SockAddr;
use crate::netlink::{self, Ns};
use crate::ports;
use crate::real;
use crate::sockopt::{restore_app_reuse, set_noport, set_port_range, set_reuseaddr, set_reuseport};
use crate::state::*;
use crate::stats::{self, Event};
use crate::sys::{self, errno};
use libc::{c_int, sockaddr, socklen_t};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};

/// How long a connect may read the dump (or wait for the thread reading it) for a first view of
/// its key before it answers EAGAIN (docs/consent.md). Natively a dump of 28,000 sockets takes
/// about 15 ms; 50 ms was too short where the reader does not run at once: 4 of 30 supervised
/// threads got a false EAGAIN on 6.1 under emulation. A bound for a stuck machine, not a target.
const FIRST_VIEW_NS: u64 = 1_000_000_000;

/// Lost races before giving up with EAGAIN.
const MAX_LOST: u32 = 32;
/// Passes: over the range (again without hints, if any was used), then over the ports that
/// were busy a moment ago; more of them, for up to OPENING_WAIT_MS, while a connect of this
/// process is between taking a port and opening it.
const MAX_PASSES: u32 = 16;
/// A bound for a machine that does not run the openers (it was 200 ms; under emulation a search
/// can take that long by itself): natively an opener holds a port for microseconds.
const OPENING_WAIT_MS: u64 = 1000;

/// Connects of this process that hold a port exclusively for a moment (the kernel's connect
/// before its unlock, the lock between its bind and its unlock or give-back). A search that met
/// busy ports waits them out rather than answer a false EAGAIN. A count, no lock, and when the
/// last one began: a count left up by a connect that was jumped out of (a signal handler's
/// siglongjmp) makes searches wait only while connects keep beginning. A fork child starts at 0.
static OPENING: AtomicU32 = AtomicU32::new(0);
static OPENING_SINCE: AtomicU64 = AtomicU64::new(0);

pub struct Opening;

impl Opening {
    pub fn new() -> Opening {
        OPENING.fetch_add(1, AcqRel);
        OPENING_SINCE.store(sys::now_ms(), Release);
        Opening
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        OPENING.fetch_sub(1, AcqRel);
    }
}

/// Whether a connect of this process may be holding a port for a moment.
fn someone_opening(now: u64) -> bool {
    OPENING.load(Acquire) > 0 && now.saturating_sub(OPENING_SINCE.load(Acquire)) < OPENING_WAIT_MS
}

/// In a fork child: the connects under way were other threads' of the parent.
pub fn after_fork_in_child() {
    OPENING.store(0, Release);
}

static WARNED_RANGE: AtomicBool = AtomicBool::new(false);

/// A locker's turn on one port: an abstract UNIX socket named after the namespace and the port,
/// bound for as long as the lock holds the port (abstract names are per network namespace and
/// go with the socket, however the process ends; a fork child closes its copy,
/// `ownfd::scratch_socket`). Lockers of other users wait their turn too (a retry, no more: they
/// could not share the port anyway); a name another program squats only keeps the lock off
/// that port, which is the kernel's answer.
///
/// Why: two lockers can both bind a port in the moment before each clears SO_REUSEPORT. The
/// check then names one of them to both, unless one is connecting that moment: the kernel's
/// UDP connect moves the socket between its address hash chains (0.0.0.0:P to SRC:P) and a
/// lookup in between does not see it, so the other locker's check found the 4-tuple free and
/// both connected it (the kernel lane on 6.12: 4 runs in 10 of 60 rounds of 16 lockers held a
/// duplicate 4-tuple). With one turn per port, a locker checks only once the other's connect
/// is over. Three system calls per port tried. Where AF_UNIX sockets cannot be made (a
/// sandbox), the lock goes on without turns, as before.
pub(super) struct PortTurn(c_int);

impl PortTurn {
    /// None: another locker holds the port's turn now. Some(None): no turns here (no AF_UNIX).
    pub(super) fn take(netns: u64, port: u16) -> Option<Option<PortTurn>> {
        let Ok(fd) = crate::ownfd::scratch_socket(libc::AF_UNIX, libc::SOCK_DGRAM) else {
            return Some(None);
        };
        // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
        let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        a.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let mut name = [0u8; 64];
        let mut w = &mut name[1..]; // sun_path[0] = 0: the abstract namespace
        let _ =
            std::io::Write::write_fmt(&mut w, format_args!("connectx-udp-turn/{netns:x}/{port}"));
        let len = 64 - w.len();
        for (d, c) in a.sun_path.iter_mut().zip(&name[..len]) {
            *d = *c as libc::c_char;
        }
        let alen = std::mem::size_of::<libc::sa_family_t>() + len;
        // SAFETY: a is a sockaddr_un of at least alen bytes.
        let r = unsafe {
            real::bind(
                fd,
                (&a as *const libc::sockaddr_un).cast(),
                alen as socklen_t,
            )
        };
        if r == 0 {
            return Some(Some(PortTurn(fd)));
        }
        let e = errno();
        crate::ownfd::close_scratch(fd);
        if e == libc::EADDRINUSE {
            None
        } else {
            Some(None)
        }
    }
}

impl Drop for PortTurn {
    fn drop(&mut self) {
        let _keep = sys::KeepErrno::new();
        crate::ownfd::close_scratch(self.0);
    }
}

/// Where one connect's search stands.
struct Search {
    flow: Flow,
    /// The address the lock binds: the program's, else the wildcard (the kernel then sets the
    /// source at connect as for its own sockets).
    bind_at: SockAddr,
    /// SO_COOKIE of the program's socket.
    me: u64,
    slot: Option<hints::Slot>,
    ask_first: bool,
    use_marks: bool,
    skipped: u32,
    busy: Busy,
    lost: u32,
    now: u64,
    /// The source the kernel gave in the last candidate's real connect, when it differed from
    /// the one it gave for port 0 (policy routing by port): checked again with it.
    src: Option<SockAddr>,
    /// The ports whose holders all consent (`consent`), and the key to ask again.
    consent: consent::Handle,
    netns: u64,
}

/// Ports whose bind failed (EADDRINUSE) in this pass: tried again before EAGAIN.
#[derive(Default)]
struct Busy {
    ports: [u16; 32],
    n: usize,
}

impl Busy {
    fn push(&mut self, port: u16) {
        if self.n < self.ports.len() {
            self.ports[self.n] = port;
            self.n += 1;
        }
    }
}

enum Step {
    Next,
    /// The real connect took another source than the check was about: same port again.
    Again,
    Done(Verdict),
}

/// The lock for a socket without a port (unbound, or bound to an address without one).
///
/// # Safety
/// `addr`/`len` are our copy of the program's connect arguments, parsed into `dst`.
pub unsafe fn search(
    fd: c_int,
    r: &Sock,
    dst: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    let bound = r.app_addr().filter(|_| r.deferred());
    let netns = exhausted::netns_of(fd, r);
    let Some(nsp) = ports::in_namespace(netns) else {
        return lock_unavailable(&WARNED_RANGE, "cannot read ip_local_port_range", libc::EIO);
    };
    let range = ports::narrow(nsp.range(), r.port_range.load(Acquire));
    let bind_at = bound.unwrap_or_else(|| wildcard(r)).with_port(0);
    // Consent first (no port of the range open to sharing: EAGAIN at once, remembered).
    // What the view's build may add to this connect: a third of what the kernel's own EAGAIN
    // took (the rest of the lock and the cold caches after it fit in the other two thirds).
    let budget = (exhausted::kernel_cost_ns(fd, r) / 3).clamp(100_000, 5_000_000);
    let mut view = consent::view(fd, netns, &bind_at, budget);
    if view.is_none_or(|v| v.partial && !consent::any_allowed(v, range, nsp)) {
        // No view of this key was ever completed in this process, and what was read so far
        // allows no port: an EAGAIN now would be a guess (a false EAGAIN where ports may be
        // shared). Read on, once, up to FIRST_VIEW_NS: only a process's first lock connects on
        // a key pay it (later ones use the last complete view while the next is read).
        view = consent::view(fd, netns, &bind_at, FIRST_VIEW_NS);
    }
    let Some(view) = view.filter(|v| consent::any_allowed(*v, range, nsp)) else {
        if view.is_some_and(|v| !v.partial) {
            crate::debug!("connect(fd {fd}): UDP lock: no port of the range may be shared");
            exhausted::note_nothing_shareable(fd, r);
        } else {
            crate::debug!(
                "connect(fd {fd}): UDP lock: which ports may be shared is not known yet ({})",
                if view.is_some() {
                    "a partial view"
                } else {
                    "no view"
                }
            );
        }
        stats::exhausted(Event::UdpEagain, "UDP", &bind_at, Some(&dst));
        return Verdict::fail(libc::EAGAIN);
    };
    // The lock's bind must take a port: our IP_BIND_ADDRESS_NO_PORT (a deferred bind) goes off;
    // and it shares with SO_REUSEPORT only, which the kernel keeps to one user (SO_REUSEADDR
    // would let it share with any user's SO_REUSEADDR socket). The program's SO_REUSEADDR stays
    // off on the lock's flows (getsockopt answers it): their port is the lock's to share.
    if set_noport(fd, r, false).is_err()
        || set_reuseaddr(fd, r, false).is_err()
        || set_reuseport(fd, r, true).is_err()
    {
        return Verdict::Pass(Pass::InternalError);
    }
    let Ok(me) = cookie(fd, r) else {
        return Verdict::Pass(Pass::InternalError);
    };
    let flow = flow_for(fd, r, &dst, bound.as_ref());
    let now = sys::now_ms();
    let slot = hints::find(&flow.peer);
    let mut s = Search {
        bind_at,
        flow,
        me,
        ask_first: hints::busy(slot, now),
        slot,
        use_marks: true,
        skipped: 0,
        busy: Busy::default(),
        lost: 0,
        now,
        src: None,
        consent: view,
        netns,
    };
    let mut full = true;
    let mut pass = 0;
    let mut quiet = false;
    loop {
        let retry = std::mem::take(&mut s.busy);
        let ports = ports::shuffled(range)
            .filter(|_| full)
            .chain(retry.ports[..retry.n].iter().copied().filter(|_| !full));
        for port in ports {
            if nsp.is_reserved(port) {
                continue;
            }
            for _ in 0..2 {
                // SAFETY: forwarded from our caller.
                match unsafe { try_port(fd, r, port, &dst, addr, len, &mut s) } {
                    Step::Next => break,
                    Step::Again => continue,
                    Step::Done(v) => return v,
                }
            }
        }
        pass += 1;
        let now = sys::now_ms();
        let timed_out = now.saturating_sub(s.now) >= OPENING_WAIT_MS;
        let waiting = someone_opening(now) && !timed_out;
        // The last pass must have begun with nobody of this process opening: a connect that
        // held a port busy and finished just before this check has given it back, and the port
        // is looked at once more rather than counted as taken (a false EAGAIN, 3 runs in 33 of
        // the fill race once ports had turns).
        if s.skipped == 0 && s.busy.n == 0 || pass >= MAX_PASSES && !waiting && (quiet || timed_out)
        {
            break;
        }
        quiet = !someone_opening(sys::now_ms());
        // Ports this process holds to the destination (a mark may be stale: everything again,
        // without marks), or ports that were busy a moment ago (another connect's lock, a
        // kernel connect about to open its port): look again before saying EAGAIN.
        full = s.skipped > 0;
        s.use_marks = false;
        s.ask_first = true;
        s.skipped = 0;
        // SAFETY: no arguments.
        unsafe { libc::sched_yield() };
    }
    restore_app_reuse(fd, r);
    crate::debug!("connect(fd {fd}): UDP lock: every port is taken for {dst}");
    let src = s.src.or(s.flow.src_hint).unwrap_or(s.bind_at);
    stats::exhausted(Event::UdpEagain, "UDP", &src, Some(&dst));
    Verdict::fail(libc::EAGAIN)
}

/// One candidate port: bind it under the lock, then `locked`.
///
/// # Safety
/// As `search`.
#[allow(clippy::too_many_arguments)]
unsafe fn try_port(
    fd: c_int,
    r: &Sock,
    port: u16,
    dst: &SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
    s: &mut Search,
) -> Step {
    if s.use_marks && hints::mine(s.slot, port) {
        s.skipped += 1;
        return Step::Next;
    }
    // Never a port held by a socket that did not consent (`consent`).
    let allowed = consent::allows(s.consent, port).or_else(|| {
        s.consent = consent::view(fd, s.netns, &s.bind_at, 0)?;
        consent::allows(s.consent, port)
    });
    if allowed != Some(true) {
        return Step::Next;
    }
    if s.consent.partial {
        // No complete view yet: the port alone is looked at (a dump filtered on it, both
        // families): every socket on it must consent.
        match netlink::port_holders_for(fd, libc::IPPROTO_UDP, true, port) {
            Ok(h) if h.unconnected == 0 && h.foreign == 0 => {}
            _ => return Step::Next,
        }
    }
    if let (true, Some(src)) = (s.ask_first, s.src.or(s.flow.src_hint)) {
        // A destination that lost races lately: skip a port it holds without binding it.
        match netlink::udp_exact(
            Ns::of_known(fd, s.netns),
            &src.with_port(port),
            &s.flow.peer,
            s.flow.ifindex,
        ) {
            Ok(Some(f)) if f.connected_to(&s.flow.peer) => return Step::Next,
            Ok(_) => {}
            Err(e) => {
                restore_app_reuse(fd, r);
                return Step::Done(diag_failed(e));
            }
        }
    }
    let app_range = r.port_range.load(Acquire);
    let _opening = Opening::new();
    // One locker at a time on a port of this namespace, from its bind to its unlock
    // (`PortTurn`); a port another locker holds this moment is looked at again later (counted
    // as opening first: this process's other searches wait for it).
    let Some(_turn) = PortTurn::take(s.netns, port) else {
        s.busy.push(port);
        return Step::Next;
    };
    if let Err(e) = set_port_range(fd, port as u32 | (port as u32) << 16) {
        // Linux before 6.3 (and Debian's 6.1 before 6.1.33): no IP_LOCAL_PORT_RANGE.
        restore_app_reuse(fd, r);
        lock_unavailable(&WARNED_RANGE, "no IP_LOCAL_PORT_RANGE in this kernel", e);
        return Step::Done(Verdict::fail(libc::EAGAIN));
    }
    // The bind must take a port: no IP_BIND_ADDRESS_NO_PORT (the mark of a candidate given
    // back stays on otherwise).
    let _ = set_noport(fd, r, false);
    let bound = sys::bind(fd, &s.bind_at);
    if bound.is_ok() {
        // The mark at once: another process's view that dumps this moment sees a connectx lock
        // at work (it consents), not an unconnected socket that refuses the port for a second.
        consent::mark(fd, r);
    }
    let _ = set_port_range(fd, app_range);
    match bound {
        Ok(()) => {}
        Err(libc::EADDRINUSE) => {
            s.busy.push(port);
            return Step::Next;
        }
        Err(libc::EINVAL) => {
            // Another thread's connect gave the socket a port meanwhile: the kernel answers.
            restore_app_reuse(fd, r);
            return Step::Done(Verdict::Pass(Pass::AlreadyBound));
        }
        Err(e) => {
            restore_app_reuse(fd, r);
            crate::debug!("connect(fd {fd}): the UDP lock's bind failed (errno {e})");
            return Step::Done(Verdict::Pass(Pass::LockUnavailable));
        }
    }
    locked(fd, r, port, dst, addr, len, s)
}

/// The socket holds `port` locked: check, connect, verify, unlock.
fn locked(
    fd: c_int,
    r: &Sock,
    port: u16,
    dst: &SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
    s: &mut Search,
) -> Step {
    // Whatever reached the socket while it held P for a moment belongs to P's other flows, or
    // to whoever sent to P: never the program's (the kernel's own socket would not have been
    // there). Dropped when the port goes back, and once connected.
    let give_back = |fd| {
        release(fd);
        drain(fd);
        let _ = set_reuseport(fd, r, true);
    };
    if set_reuseport(fd, r, false).is_err() {
        give_back(fd);
        return Step::Next;
    }
    let local = match s.src.or(s.flow.src_hint) {
        Some(src) => src.with_port(port),
        None => {
            // No route to this peer: the real connect gives the program the answer the kernel
            // gives once a socket has a port. Connected all the same, it was not checked:
            // undone, and EAGAIN.
            crate::debug!("connect(fd {fd}): no route to {dst}");
            // SAFETY: our copy of the program's arguments, unchanged.
            let ret = unsafe { real::connect(fd, addr, len) };
            let e = errno();
            give_back(fd);
            restore_app_reuse(fd, r);
            return Step::Done(if ret < 0 {
                Verdict::answer(ret as isize, e)
            } else {
                Verdict::fail(libc::EAGAIN)
            });
        }
    };
    // Another locker may have bound P in the moment before this one cleared SO_REUSEPORT: then
    // both hold it, and the lookup names one of them to both. Only the one it names goes on; the
    // other gives P back and tries it again later (it may well be free for this destination).
    match check(&s.flow, &local, &[s.me]) {
        Check::Free => {}
        Check::Busy => {
            give_back(fd);
            s.busy.push(port);
            return Step::Next;
        }
        Check::Taken => {
            give_back(fd);
            stats::count(Event::UdpRaceLost);
            s.lost += 1;
            s.ask_first = true;
            s.slot = hints::lost_race(&s.flow.peer, s.now).or(s.slot);
            if s.lost >= MAX_LOST {
                restore_app_reuse(fd, r);
                crate::debug!("connect(fd {fd}): UDP lock gave up after {MAX_LOST} lost races");
                stats::exhausted(Event::UdpEagain, "UDP", &local, Some(dst));
                return Step::Done(Verdict::fail(libc::EAGAIN));
            }
            return Step::Next;
        }
        Check::Failed(e) => {
            give_back(fd);
            restore_app_reuse(fd, r);
            return Step::Done(diag_failed(e));
        }
    }
    // SAFETY: our copy of the program's arguments, unchanged.
    let ret = unsafe { real::connect(fd, addr, len) };
    if ret < 0 {
        let e = errno();
        give_back(fd);
        restore_app_reuse(fd, r);
        return Step::Done(Verdict::answer(ret as isize, e));
    }
    let now = sys::getsockname(fd).unwrap_or(local);
    if !same_ip(&now, &local) {
        // The kernel chose another source than the route said (a rule on something the route
        // query did not carry): undo, and check the 4-tuple it really uses.
        crate::debug!("connect(fd {fd}): the kernel took {now}, not {local}: checking again");
        give_back(fd);
        s.src = Some(now.with_port(0));
        return Step::Again;
    }
    drain(fd);
    r.enter(Phase::Ours);
    connected(fd, r, &now, dst);
    // Once more, last: a datagram the kernel looked up before the connect (the socket was
    // unconnected then, so from anyone) can be queued only after the first drain, when its
    // delivery ran on another CPU meanwhile. The unlock's calls give it time to land.
    drain(fd);
    stats::count(Event::UdpLockConnect);
    crate::debug!(
        "connect(fd {fd}): UDP lock: {now} -> {dst} after {} lost races",
        s.lost
    );
    Step::Done(Verdict::done(0))
}
