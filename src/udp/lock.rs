//! The lock: a UDP connect that the kernel could not give a port, or a connect on a port
//! connectx shares. The kernel facts it rests on are pinned in tests/udp.rs and KERNEL.md.
//!
//! For each candidate port P (random start and stride over the range, `ports::shuffled`):
//! 1. bind port 0 on the program's address (or the wildcard) with SO_REUSEPORT and the
//!    socket's IP_LOCAL_PORT_RANGE set to [P, P]: the kernel takes P if every holder shares
//!    (same uid, SO_REUSEPORT) and honours its reserved ports; the port is not "user-locked",
//!    so a disconnect gives it back exactly as the kernel gives back an autobound port;
//! 2. clear SO_REUSEPORT: the lock, nobody can bind P now, with or without SO_REUSEADDR or
//!    SO_REUSEPORT;
//! 3. ask SOCK_DIAG (exact lookup, on the interface replies come in by) which socket would
//!    receive from the destination on (source, P): it must be this one (SO_COOKIE) or none;
//! 4. connect with the program's arguments, check that the kernel took the source the check
//!    was about (getsockname; policy routing the route query missed is caught here);
//! 5. set SO_REUSEPORT again: the unlock, P is open to other flows of the same user.
//!
//! A lost check gives the port back (connect AF_UNSPEC) and goes on with the next port: no
//! fresh socket is ever swapped in. Every port taken, or 32 lost races: EAGAIN.
//!
//! A socket that already has a shared port (a reconnect, or a fixed port the program bound)
//! cannot take the lock by binding; a short-lived sentinel socket bound to the same address and
//! port holds the lock for it while its connect is checked.

use super::{Pass, Verdict, hints, lock_unavailable, ports, source};
use crate::addr::SockAddr;
use crate::netlink::{self, Ns, RouteContext, TCP_ESTABLISHED};
use crate::sockopt::{restore_app_reuse, set_noport, set_port_range, set_reuseport};
use crate::state::*;
use crate::stats::{self, Event};
use crate::sys::{self, KeepErrno, errno};
use crate::{real, sys::set_int};
use libc::{c_int, sockaddr, socklen_t};
use std::sync::atomic::{AtomicBool, Ordering::*};

/// Lost races before giving up with EAGAIN.
const MAX_LOST: u32 = 32;
/// Passes: over the range (again without hints, if any was used), then over the ports that
/// were busy a moment ago.
const MAX_PASSES: u32 = 16;

static WARNED_RANGE: AtomicBool = AtomicBool::new(false);
static WARNED_DIAG: AtomicBool = AtomicBool::new(false);

fn wildcard(r: &Sock) -> SockAddr {
    if r.any(V6) {
        SockAddr::V6 {
            ip: [0; 16],
            port: 0,
            flowinfo: 0,
            scope: 0,
        }
    } else {
        SockAddr::V4 {
            ip: [0; 4],
            port: 0,
        }
    }
}

/// The peer as the kernel's connect makes it: an unspecified address means this host (the
/// bound IPv4 address, else loopback; IPv6 `::` is `::1`, or v4-mapped loopback on a socket
/// bound to a v4-mapped address).
fn peer_as_kernel_makes_it(dst: &SockAddr, bound: Option<&SockAddr>) -> SockAddr {
    let port = dst.port();
    let bound_v4 = bound.and_then(|b| b.as_v4()).filter(|ip| *ip != [0; 4]);
    match dst {
        SockAddr::V4 {
            ip: [0, 0, 0, 0], ..
        } => SockAddr::V4 {
            ip: bound_v4.unwrap_or([127, 0, 0, 1]),
            port,
        },
        SockAddr::V6 { ip, .. } if dst.v4_mapped() == Some([0; 4]) => {
            let _ = ip;
            SockAddr::mapped(bound_v4.unwrap_or([127, 0, 0, 1]), port)
        }
        SockAddr::V6 { ip, .. } if *ip == [0; 16] => {
            if bound.and_then(|b| b.v4_mapped()).is_some() {
                SockAddr::mapped([127, 0, 0, 1], port)
            } else {
                let mut one = [0u8; 16];
                one[15] = 1;
                SockAddr::V6 {
                    ip: one,
                    port,
                    flowinfo: 0,
                    scope: 0,
                }
            }
        }
        _ => *dst,
    }
}

fn same_ip(a: &SockAddr, b: &SockAddr) -> bool {
    match (a, b) {
        (SockAddr::V4 { ip: x, .. }, SockAddr::V4 { ip: y, .. }) => x == y,
        (SockAddr::V6 { ip: x, .. }, SockAddr::V6 { ip: y, .. }) => x == y,
        _ => false,
    }
}

/// The options routing may depend on, read from the socket when the program set any.
fn context(fd: c_int, r: &Sock) -> RouteContext {
    if !r.any(CONTEXT) {
        return RouteContext::default();
    }
    let get = |level, name| sys::get_int(fd, level, name).unwrap_or(0);
    let tos = if r.any(V6) {
        get(libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
    } else {
        get(libc::IPPROTO_IP, libc::IP_TOS)
    };
    RouteContext {
        oif: get(libc::SOL_SOCKET, libc::SO_BINDTOIFINDEX) as u32,
        mark: get(libc::SOL_SOCKET, libc::SO_MARK) as u32,
        tos: tos as u8,
    }
}

/// Where the check looks: the peer as the kernel makes it, and the interface replies from it
/// come in by (a socket bound to that device must be seen; SO_BINDTODEVICE's own if set).
struct Flow {
    /// The program's socket: its network namespace is the one asked.
    sock: c_int,
    peer: SockAddr,
    ifindex: u32,
    /// The source as the bound address or the route says: for looking before binding only.
    src_hint: Option<SockAddr>,
}

fn flow_for(fd: c_int, r: &Sock, dst: &SockAddr, bound: Option<&SockAddr>) -> Flow {
    let ctx = context(fd, r);
    let peer = peer_as_kernel_makes_it(dst, bound);
    // No route: the lookup on the address's own scope; the connect will say why.
    let route = source::source_for(fd, &peer, &ctx).ok();
    let ifindex = if ctx.oif != 0 {
        ctx.oif
    } else {
        route.map_or(0, |(_, oif)| oif)
    };
    let src_hint = bound
        .filter(|a| !a.is_unspecified())
        .map(|a| a.with_port(0))
        .or(route.map(|(src, _)| src));
    Flow {
        sock: fd,
        peer,
        ifindex,
        src_hint,
    }
}

/// Connects the socket that holds a port's lock to the peer's address with port 0. Nothing is
/// sent; the kernel picks the source exactly as for the real connect (routing, mark, device),
/// which getsockname then tells; and the port's reuseport group is marked as having connected
/// sockets, without which kernels before 6.13 answer a lookup with any member of the group.
/// The socket, connected to port 0, is never the answer to the check itself.
fn connect_dummy(fd: c_int, peer: &SockAddr) -> Result<SockAddr, c_int> {
    let _keep = KeepErrno::new();
    let raw = peer.with_port(0).to_raw();
    // SAFETY: raw holds a sockaddr of raw.len() bytes.
    if unsafe { real::connect(fd, raw.ptr(), raw.len()) } < 0 {
        return Err(errno());
    }
    sys::getsockname(fd)
}

enum Check {
    Free,
    Taken,
    Failed(c_int),
}

/// Would a datagram from the peer to `local` reach a socket other than `mine` (the socket, and
/// the sentinel that holds the lock for it)? A socket connected to the peer's port 0
/// (`connect_dummy`) matches any port of the peer, below a socket connected to the very 4-tuple.
fn check(flow: &Flow, local: &SockAddr, mine: &[u64]) -> Check {
    match netlink::udp_exact(Ns::Of(flow.sock), local, &flow.peer, flow.ifindex) {
        Ok(None) => Check::Free,
        Ok(Some(f)) if mine.contains(&f.cookie) => Check::Free,
        Ok(Some(_)) => Check::Taken,
        Err(e) => Check::Failed(e),
    }
}

/// Is the 4-tuple from the peer to `local` owned by a connected socket?
fn check_connected(flow: &Flow, local: &SockAddr) -> Check {
    match netlink::udp_exact(Ns::Of(flow.sock), local, &flow.peer, flow.ifindex) {
        Ok(Some(f)) if f.state == TCP_ESTABLISHED => Check::Taken,
        Ok(_) => Check::Free,
        Err(e) => Check::Failed(e),
    }
}

fn cookie(fd: c_int, r: &Sock) -> Result<u64, c_int> {
    let c = r.cookie.load(Acquire);
    if c != 0 {
        return Ok(c);
    }
    let c = sys::cookie(fd)?;
    r.cookie.store(c, Release);
    Ok(c)
}

/// Gives back a port the lock bound (no SOCK_BINDPORT_LOCK: the kernel unhashes it, keeping a
/// bound address) and disconnects the socket if it was connected.
pub fn release(fd: c_int) {
    let _keep = KeepErrno::new();
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a valid AF_UNSPEC sockaddr of its own size.
    unsafe {
        real::connect(
            fd,
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as socklen_t,
        )
    };
}

/// Datagrams that reached the socket during a connect that had to be undone were meant for the
/// socket that owns that 4-tuple: never hand them to the program.
fn drain(fd: c_int) {
    let _keep = KeepErrno::new();
    let mut buf = [0u8; 64];
    for _ in 0..256 {
        // SAFETY: buf is writable for its length.
        let n = unsafe {
            real::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 && errno() != libc::ECONNREFUSED {
            break;
        }
    }
}

fn diag_failed(e: c_int) -> Verdict {
    if e == netlink::WRONG_NETNS {
        // The socket is in another network namespace than this thread, and the pool has no
        // netlink socket there: nothing can be asked, so the kernel's own answer.
        crate::debug!("UDP lock: the socket's network namespace cannot be asked from here");
        return Verdict::fail(libc::EAGAIN);
    }
    stats::count(Event::UdpNoDiag);
    lock_unavailable(&WARNED_DIAG, "SOCK_DIAG did not answer", e);
    // At exhaustion the kernel's answer is EAGAIN; on a shared port an unchecked connect could
    // make a duplicate 4-tuple. Either way: EAGAIN, never a guess.
    Verdict::fail(libc::EAGAIN)
}

/// The socket's connect went through on (src, port): unlock and remember.
fn connected(fd: c_int, r: &Sock, local: &SockAddr, dst: &SockAddr) {
    let _keep = KeepErrno::new();
    let _ = set_reuseport(fd, r, true);
    r.clear(DEFERRED);
    r.set_local(local);
    r.set(HAS_PORT | CONNECTED);
    let slot = hints::find(dst);
    hints::unmark(r.flow.swap(hints::mark(slot, local.port()), AcqRel));
}

/// Where one connect's search stands.
struct Search {
    flow: Flow,
    /// The address the lock binds: the program's, else the wildcard (the kernel then sets the
    /// source at connect as for its own sockets).
    bind_at: SockAddr,
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
    let bound = r.app_addr().filter(|_| r.any(DEFERRED));
    let Some(ns) = ports::namespace_range() else {
        return lock_unavailable(&WARNED_RANGE, "cannot read ip_local_port_range", libc::EIO);
    };
    let range = ports::narrow(ns, r.port_range.load(Acquire));
    // The lock's bind must take a port: our IP_BIND_ADDRESS_NO_PORT (a deferred bind) goes off.
    if set_noport(fd, r, false).is_err() || set_reuseport(fd, r, true).is_err() {
        return Verdict::Pass(Pass::InternalError);
    }
    let flow = flow_for(fd, r, &dst, bound.as_ref());
    let now = sys::now_ms();
    let slot = hints::find(&flow.peer);
    let mut s = Search {
        bind_at: bound.unwrap_or_else(|| wildcard(r)).with_port(0),
        flow,
        ask_first: hints::busy(slot, now),
        slot,
        use_marks: true,
        skipped: 0,
        busy: Busy::default(),
        lost: 0,
        now,
        src: None,
    };
    let mut full = true;
    for _pass in 0..MAX_PASSES {
        let retry = std::mem::take(&mut s.busy);
        let ports = ports::shuffled(range)
            .filter(|_| full)
            .chain(retry.ports[..retry.n].iter().copied().filter(|_| !full));
        for port in ports {
            if ports::is_reserved(port) {
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
        if s.skipped == 0 && s.busy.n == 0 {
            break;
        }
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
    if let (true, Some(src)) = (s.ask_first, s.src.or(s.flow.src_hint)) {
        // A destination that lost races lately: skip a port it holds without binding it.
        match netlink::udp_exact(
            Ns::Of(fd),
            &src.with_port(port),
            &s.flow.peer,
            s.flow.ifindex,
        ) {
            Ok(Some(f)) if f.state == TCP_ESTABLISHED => return Step::Next,
            Ok(_) => {}
            Err(e) => {
                restore_app_reuse(fd, r);
                return Step::Done(diag_failed(e));
            }
        }
    }
    let app_range = r.port_range.load(Acquire);
    if let Err(e) = set_port_range(fd, port as u32 | (port as u32) << 16) {
        // Linux before 6.3 (and Debian's 6.1 before 6.1.33): no IP_LOCAL_PORT_RANGE.
        restore_app_reuse(fd, r);
        lock_unavailable(&WARNED_RANGE, "no IP_LOCAL_PORT_RANGE in this kernel", e);
        return Step::Done(Verdict::fail(libc::EAGAIN));
    }
    let bound = sys::bind(fd, &s.bind_at);
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
    let give_back = |fd| {
        release(fd);
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
    // The socket holds the port's lock: nobody else can have bound it meanwhile, so only a
    // connected socket (one that owns the 4-tuple) can take it; this one is not yet connected.
    match check_connected(&s.flow, &local) {
        Check::Free => {}
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
        drain(fd);
        s.src = Some(now.with_port(0));
        return Step::Again;
    }
    r.set(OUR_PORT);
    connected(fd, r, &now, dst);
    stats::count(Event::UdpLockConnect);
    crate::debug!(
        "connect(fd {fd}): UDP lock: {now} -> {dst} after {} lost races",
        s.lost
    );
    Step::Done(Verdict::done(0))
}

/// Holds a shared port's lock for a socket that already has the port: a socket of ours bound to
/// the same address and port (which succeeds only while no one holds the lock), its
/// SO_REUSEPORT then cleared, connected to the peer's port 0 (`connect_dummy`). Closed on drop.
struct Sentinel {
    fd: c_int,
    cookie: u64,
}

impl Sentinel {
    fn lock(r: &Sock, at: &SockAddr, peer: &SockAddr) -> Result<Sentinel, c_int> {
        let _keep = KeepErrno::new();
        let domain = if r.any(V6) {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        // SAFETY: plain socket(2) through the real function.
        let fd = unsafe { real::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(errno());
        }
        let mut s = Sentinel { fd, cookie: 0 };
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        let mut tries = 0;
        loop {
            match sys::bind(fd, at) {
                Ok(()) => break,
                // Another connect holds the lock for a moment.
                Err(libc::EADDRINUSE) if tries < 64 => {
                    tries += 1;
                    // SAFETY: no arguments.
                    unsafe { libc::sched_yield() };
                }
                Err(e) => return Err(e),
            }
        }
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 0)?;
        // What the kernel refuses here (a peer of the other family after a v4-mapped connect,
        // no route) it refuses to the program's socket too: its real connect then answers.
        let _ = connect_dummy(fd, peer);
        s.cookie = sys::cookie(fd)?;
        Ok(s)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

/// A connect on a socket whose port connectx shares and that is connected (through the lock,
/// or by the kernel and then opened): the kernel keeps a connected socket's port and source
/// across connects, and so does this while the new 4-tuple is free, under a sentinel's lock;
/// otherwise the port goes back and the search starts afresh.
///
/// # Safety
/// As `search`.
pub unsafe fn reconnect(
    fd: c_int,
    r: &Sock,
    dst: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    let app = r.app_addr();
    if let Ok(local) = sys::getsockname(fd) {
        // SAFETY: forwarded from our caller.
        if let Some(v) = unsafe { connect_on_own_port(fd, r, &local, &dst, addr, len) } {
            return v;
        }
    }
    // The new 4-tuple on this port is taken: give the port back (a bound address stays, as the
    // program bound it) and search as for a fresh socket.
    release(fd);
    hints::unmark(r.flow.swap(0, AcqRel));
    r.clear(OUR_PORT | HAS_PORT | CONNECTED);
    restore_app_reuse(fd, r);
    if app.is_some() {
        r.set(DEFERRED);
    }
    // SAFETY: forwarded from our caller.
    unsafe { search(fd, r, dst, addr, len) }
}

/// Check and connect on the port (and source) the connected socket holds, under a sentinel.
/// None when that 4-tuple is taken or the port's lock cannot be had.
///
/// # Safety
/// As `search`.
unsafe fn connect_on_own_port(
    fd: c_int,
    r: &Sock,
    local: &SockAddr,
    dst: &SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<Verdict> {
    let flow = flow_for(fd, r, dst, Some(local));
    let me = cookie(fd, r).ok()?;
    let sentinel = Sentinel::lock(r, local, &flow.peer).ok()?;
    match check(&flow, local, &[me, sentinel.cookie]) {
        Check::Free => {}
        Check::Taken => return None,
        Check::Failed(e) => return Some(diag_failed(e)),
    }
    // SAFETY: our copy of the program's arguments, unchanged. A connect the kernel refuses
    // keeps the socket's old peer, as without us.
    let ret = unsafe { real::connect(fd, addr, len) };
    if ret < 0 {
        return Some(Verdict::answer(ret as isize, errno()));
    }
    connected(fd, r, local, dst);
    Some(Verdict::done(0))
}

/// A connect on a fixed port the program bound (bind(ip, P)). Exclusive until its first connect
/// (nobody else can be on the port), it is then opened to other flows; from then on every
/// connect is checked under the port's lock. A taken 4-tuple: EADDRNOTAVAIL, as TCP says.
///
/// # Safety
/// As `search`.
pub unsafe fn connect_fixed(
    fd: c_int,
    r: &Sock,
    dst: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    if !r.any(SHARED) && !r.any(K_REUSEPORT) {
        // Nobody else holds the port: the kernel's connect cannot make a duplicate.
        // SAFETY: our copy of the program's arguments.
        let ret = unsafe { real::connect(fd, addr, len) };
        if ret < 0 {
            return Verdict::answer(ret as isize, errno());
        }
        r.set(SHARED);
        let local = sys::getsockname(fd).ok().or(r.local());
        opened(fd, r, local, &dst);
        return Verdict::done(0);
    }
    let (Ok(bound), Ok(me)) = (sys::getsockname(fd), cookie(fd, r)) else {
        return Verdict::Pass(Pass::InternalError);
    };
    let flow = flow_for(fd, r, &dst, Some(&bound).filter(|a| !a.is_unspecified()));
    // Open (connected before), a sentinel takes the port's lock; locked (since its bind or its
    // disconnect), the socket holds it itself.
    let (sentinel, local) = if r.any(K_REUSEPORT) {
        match Sentinel::lock(r, &bound, &flow.peer) {
            Ok(s) => (Some(s), bound),
            Err(_) => return Verdict::fail(libc::EAGAIN),
        }
    } else {
        // The socket holds the lock itself: the source is the bound address or the route's.
        (
            None,
            flow.src_hint
                .map_or(bound, |src| src.with_port(bound.port())),
        )
    };
    let mine = [me, sentinel.as_ref().map_or(me, |s| s.cookie)];
    match check(&flow, &local, &mine) {
        Check::Free => {}
        Check::Taken => return Verdict::fail(libc::EADDRNOTAVAIL),
        Check::Failed(e) => return diag_failed(e),
    }
    // SAFETY: our copy of the program's arguments.
    let ret = unsafe { real::connect(fd, addr, len) };
    if ret < 0 {
        return Verdict::answer(ret as isize, errno());
    }
    let now = sys::getsockname(fd).ok();
    if let Some(n) = now.filter(|n| !same_ip(n, &local)) {
        // The kernel took another source than the check was about: check that 4-tuple.
        if !matches!(check(&flow, &n, &mine), Check::Free) {
            // The program's port stays bound (it bound it); the duplicate is undone.
            release(fd);
            drain(fd);
            r.clear(CONNECTED);
            return Verdict::fail(libc::EADDRNOTAVAIL);
        }
    }
    opened(fd, r, now, &dst);
    Verdict::done(0)
}

/// A fixed-port socket connected: open its port to other flows.
fn opened(fd: c_int, r: &Sock, local: Option<SockAddr>, dst: &SockAddr) {
    match local {
        Some(l) => connected(fd, r, &l, dst),
        None => {
            let _keep = KeepErrno::new();
            let _ = set_reuseport(fd, r, true);
            r.set(CONNECTED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_peers_become_this_host() {
        let v4 = |ip, port| SockAddr::V4 { ip, port };
        assert_eq!(
            peer_as_kernel_makes_it(&v4([0; 4], 53), None),
            v4([127, 0, 0, 1], 53)
        );
        let bound = v4([127, 0, 0, 5], 0);
        assert_eq!(
            peer_as_kernel_makes_it(&v4([0; 4], 53), Some(&bound)),
            v4([127, 0, 0, 5], 53)
        );
        assert_eq!(
            peer_as_kernel_makes_it(&SockAddr::mapped([0; 4], 53), None),
            SockAddr::mapped([127, 0, 0, 1], 53)
        );
        let any6 = SockAddr::V6 {
            ip: [0; 16],
            port: 53,
            flowinfo: 0,
            scope: 0,
        };
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(
            peer_as_kernel_makes_it(&any6, None),
            SockAddr::V6 {
                ip: one,
                port: 53,
                flowinfo: 0,
                scope: 0
            }
        );
        let other = v4([127, 0, 0, 9], 53);
        assert_eq!(peer_as_kernel_makes_it(&other, Some(&bound)), other);
    }

    #[test]
    fn same_ip_ignores_ports() {
        let a = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 4000,
        };
        assert!(same_ip(&a, &a.with_port(0)));
        assert!(!same_ip(
            &a,
            &SockAddr::V4 {
                ip: [127, 0, 0, 2],
                port: 4000
            }
        ));
        assert!(!same_ip(&a, &SockAddr::mapped([127, 0, 0, 1], 4000)));
    }
}
