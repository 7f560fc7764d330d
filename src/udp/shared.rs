//! Connects on a UDP port connectx already shares: a reconnect of a socket connected by the
//! kernel or the lock, and every connect of a fixed port the program bound. Such a socket cannot
//! take the port's lock by binding again; a short-lived sentinel socket of ours, bound to the
//! same address and port (which succeeds only while nobody holds the lock) with its
//! SO_REUSEPORT then cleared, holds it while the connect is checked.

use super::flow::{
    Check, check, connect_dummy, connected, cookie, diag_failed, drain, flow_for, release, same_ip,
};
use super::{Pass, Verdict, hints, lock};
use crate::addr::SockAddr;
use crate::real;
use crate::sockopt::{restore_app_reuse, set_reuseport};
use crate::state::*;
use crate::sys::{self, KeepErrno, errno, set_int};
use libc::{c_int, sockaddr, socklen_t};
use std::sync::atomic::Ordering::*;

/// Holds a shared port's lock for a socket that already has the port: a socket of ours bound to
/// the same address and port (which succeeds only while no one holds the lock), its
/// SO_REUSEPORT then cleared, connected to the peer's port 0 (`connect_dummy`). Closed on drop.
///
/// It first takes the port's turn (`lock::PortTurn`), as the lock does: a lock's socket that
/// is connecting this moment is missing from the kernel's lookup, and the sentinel's check must
/// not run then (the kernel lane: two sockets on one 4-tuple when 16 threads reconnected to one
/// destination while some of them went through the lock).
struct Sentinel {
    fd: c_int,
    cookie: u64,
    _turn: Option<lock::PortTurn>,
}

impl Sentinel {
    fn lock(r: &Sock, at: &SockAddr, peer: &SockAddr, netns: u64) -> Result<Sentinel, c_int> {
        let _keep = KeepErrno::new();
        // Another lock or sentinel on the port holds its turn for a moment: wait (bounded).
        let mut turn = None;
        for _ in 0..64 {
            turn = lock::PortTurn::take(netns, at.port());
            if turn.is_some() {
                break;
            }
            // SAFETY: no arguments.
            unsafe { libc::sched_yield() };
        }
        let turn = turn.ok_or(libc::EADDRINUSE)?;
        let domain = if r.any(V6) {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        // Recorded while it lives: a fork child closes its copy (issue 16).
        let fd = crate::ownfd::scratch_socket(domain, libc::SOCK_DGRAM)?;
        let mut s = Sentinel {
            fd,
            cookie: 0,
            _turn: turn,
        };
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        // connectx's mark before the bind (a bind to a given port takes it all the same): a
        // consent view dumped before the sentinel is connected sees a connectx socket, not an
        // unconnected one that refuses the port for a second (`consent`; the kernel lane: a
        // round's first connects refused as "nothing shareable").
        let _ = set_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
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
        crate::ownfd::close_scratch(self.fd);
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
    let local = sys::getsockname(fd);
    if local.is_ok_and(|l| l.port() == 0) {
        // No port any more: another process sharing the socket (fork) disconnected it. As a
        // socket without a port: the kernel's own connect first.
        hints::unmark(r.flow.swap(0, AcqRel));
        r.enter(Phase::Free);
        r.clear(CONNECTED);
        restore_app_reuse(fd, r);
        // SAFETY: forwarded from our caller.
        return unsafe { super::kernel_first(fd, r, addr, len) };
    }
    if let Ok(local) = local {
        // SAFETY: forwarded from our caller.
        if let Some(v) = unsafe { connect_on_own_port(fd, r, &local, &dst, addr, len) } {
            return v;
        }
    }
    // The new 4-tuple on this port is taken: give the port back (a bound address stays, as the
    // program bound it) and search as for a fresh socket.
    release(fd);
    hints::unmark(r.flow.swap(0, AcqRel));
    r.clear(CONNECTED);
    r.enter(if app.is_some() {
        Phase::Deferred
    } else {
        Phase::Free
    });
    restore_app_reuse(fd, r);
    // SAFETY: forwarded from our caller.
    unsafe { lock::search(fd, r, dst, addr, len) }
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
    if !super::consent::known_to_consent(fd, r, local) {
        // A socket that did not consent (a same-user server with SO_REUSEPORT) came onto the
        // port since: the sentinel would join its group. The port goes back; the search runs.
        return None;
    }
    let sentinel = Sentinel::lock(r, local, &flow.peer, flow.netns).ok()?;
    match check(&flow, local, &[me, sentinel.cookie]) {
        Check::Free => {}
        Check::Taken | Check::Busy => return None,
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
    if !r.is(Phase::Shared) && !r.any(K_REUSEPORT) {
        // Nobody else holds the port: the kernel's connect cannot make a duplicate.
        // SAFETY: our copy of the program's arguments.
        let ret = unsafe { real::connect(fd, addr, len) };
        if ret < 0 {
            return Verdict::answer(ret as isize, errno());
        }
        r.enter(Phase::Shared);
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
        match Sentinel::lock(r, &bound, &flow.peer, flow.netns) {
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
        Check::Taken | Check::Busy => return Verdict::fail(libc::EADDRNOTAVAIL),
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

/// A connect on a fixed port held back at bind (PENDING: P was held by connectx flows only).
/// The 4-tuple is checked before the socket binds P: taken, EADDRNOTAVAIL and the socket stays
/// unbound, so P stays open to the next socket that binds it (as TCP does). Free, P is bound
/// and locked, and `connect_fixed` checks again under the lock. A flow that takes the 4-tuple
/// between the two checks leaves this socket holding P after its EADDRNOTAVAIL, as before.
///
/// # Safety
/// As `search`.
pub unsafe fn connect_pending(
    fd: c_int,
    r: &Sock,
    dst: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    let (Some(app), Ok(me)) = (r.app_addr(), cookie(fd, r)) else {
        return Verdict::Pass(Pass::InternalError);
    };
    let flow = flow_for(fd, r, &dst, Some(&app).filter(|a| !a.is_unspecified()));
    let local = flow.src_hint.map_or(app, |src| src.with_port(app.port()));
    match check(&flow, &local, &[me]) {
        Check::Free => {}
        Check::Taken | Check::Busy => {
            crate::debug!("connect(fd {fd}): {local} -> {dst} is taken; the port stays unbound");
            return Verdict::fail(libc::EADDRNOTAVAIL);
        }
        Check::Failed(e) => return diag_failed(e),
    }
    crate::policy::materialize(fd, r);
    if !r.has_port() {
        // Someone holds P's lock this moment, or a holder that may not be shared came.
        return Verdict::fail(libc::EADDRNOTAVAIL);
    }
    // SAFETY: forwarded from our caller.
    unsafe { connect_fixed(fd, r, dst, addr, len) }
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
