//! TCP policy (SPEC "The three uses of an outgoing connection").
//!
//! - bind(ip or wildcard, 0): bind with IP_BIND_ADDRESS_NO_PORT so the kernel picks the port at
//!   connect per 4-tuple (one extra system call; `policy::bind`, shared with UDP). The program's
//!   own NO_PORT (curl) is left alone. A getsockname before connect binds it for real (the
//!   kernel's own bind while ports are free); if no port is free it stays deferred with its
//!   address, and its connect takes a port that a bind() reserved (`choose_port`).
//! - bind(ip, P): bind as asked. Only if that fails with EADDRINUSE, and the port's holders are
//!   outgoing connections (`may_share`: not a server, not a socket that merely bound it), the
//!   bind is held back until connect, which binds P (SO_REUSEADDR) only if P's 4-tuple to the
//!   destination is free (`bind_pending`). CONNECTX_BIND_BUSY=kernel keeps the kernel's
//!   EADDRINUSE instead.
//! - connect on a fixed port: set SO_REUSEADDR first, so later sockets may use the port for
//!   other destinations (and its TIME_WAIT inherits it). The kernel still refuses a second
//!   connection to the same destination (EADDRNOTAVAIL).

use crate::addr::SockAddr;
use crate::decision::{Pass, Then, Verdict};
use crate::netlink::{Ns, RouteContext};
use crate::sockopt::{restore_app_reuse, set_noport, set_reuseaddr};
use crate::state::*;
use crate::sys::KeepErrno;
use crate::{features, netlink, ports, sys};
use libc::c_int;

/// A fixed port held by others may be shared only if its holders are connections or TIME_WAIT:
/// none listens and none merely bound it (a server before listen; Linux 6.5+ dumps bound-only
/// sockets; before that no sharing at all: `features::tcp_fixed_sharing`).
pub fn may_share(h: &netlink::Holders) -> bool {
    h.flows > 0 && h.listening == 0 && h.unconnected == 0 && features::tcp_fixed_sharing()
}

/// connect, or sendto/sendmsg with MSG_FASTOPEN (an implicit connect), before the program's
/// call: `dst` reads the destination safely (asked only for a held-back bind); None when the
/// address is not one (AF_UNSPEC, bad) or cannot be read (MSG_FASTOPEN, where `policy::send`
/// has made a held-back bind first). The program's call itself (blocking, cancellable) is made
/// by the hook as its last act (`Verdict::Call`), then `after_connect`.
pub fn connect(fd: c_int, r: &Sock, dst: impl FnOnce() -> Option<SockAddr>) -> Verdict {
    if r.is(Phase::Listening) {
        // A server keeps the kernel's semantics (a send with MSG_FASTOPEN reaches here too).
        return Verdict::Pass(Pass::Server);
    }
    if r.is(Phase::Pending) {
        let Some(d) = dst() else {
            // Not a destination (AF_UNSPEC, a bad address): the kernel answers for the unbound
            // socket, as it would have after the failed bind.
            return Verdict::Pass(Pass::KernelAnswers);
        };
        if let Err(e) = bind_pending(fd, r, d) {
            return Verdict::fail(e);
        }
        // Bound on P with SO_REUSEADDR: on as a fixed port below.
    } else if r.deferred() {
        // The kernel picks the port now, per 4-tuple.
        return Verdict::Call(Then::TcpDeferred);
    }
    if !r.has_port() || r.any(CONNECTED) {
        return Verdict::Pass(Pass::KernelSharesPorts);
    }
    fixed_connect(fd, r)
}

/// After the program's connect (`connect` said `Verdict::Call(then)`), which returned `ret`
/// with errno `e`: `disconnects` says whether it was connect(AF_UNSPEC); `dst` as for `connect`.
/// May ask for the call once more (a port a bind reserved, chosen for a destination the kernel
/// had no port for).
pub fn after_connect(
    fd: c_int,
    r: &Sock,
    then: Then,
    (ret, e): (isize, c_int),
    disconnects: impl FnOnce() -> bool,
    dst: impl FnOnce() -> Option<SockAddr>,
) -> Verdict {
    sys::set_errno(e);
    match then {
        Then::TcpDeferred => {
            let mut ret = ret;
            let mut dest = None;
            if ret < 0 && e == libc::EADDRNOTAVAIL {
                // Every port without a bind() of its own is taken towards this destination.
                // Ports that bind() reserved (the kernel's autobind never uses them) may still
                // be free for this 4-tuple: try one, as a fixed port.
                dest = dst();
                if let Some(d) = dest
                    && choose_port(fd, r, &d)
                {
                    return fixed_connect(fd, r);
                }
                sys::set_errno(libc::EADDRNOTAVAIL);
                ret = -1;
            }
            let result = Verdict::answer(ret, sys::errno());
            // A disconnect leaves an unconnected socket as it was: still bound without a port.
            if !(ret == 0 && disconnects()) {
                counted(r, ret >= 0, dest.as_ref());
                attempted(fd, r, ret >= 0);
            }
            result
        }
        Then::TcpFixed => {
            let result = Verdict::answer(ret, e);
            if (ret == 0 && !disconnects()) || (ret < 0 && going(e)) {
                r.set(CONNECTED);
                crate::debug!("connect(fd {fd}): fixed source port opened to other destinations");
            } else {
                // Still unconnected (a disconnect, or a connect that failed): exclusive again,
                // as the program left it.
                let _keep = KeepErrno::new();
                restore_app_reuse(fd, r);
            }
            result
        }
    }
}

/// A socket with its own port: open the port to other destinations before the connect.
fn fixed_connect(fd: c_int, r: &Sock) -> Verdict {
    if !features::tcp_fixed_sharing() {
        // No other socket may share the port (may_share), so opening it serves nobody.
        return Verdict::Pass(Pass::KernelLacksFeature);
    }
    let _ = set_reuseaddr(fd, r, true);
    Verdict::Call(Then::TcpFixed)
}

/// The local end a connect from `a` to `dst` would have (the route's source for a wildcard,
/// asked in the socket's namespace). A prediction only: the kernel itself refuses a taken
/// 4-tuple at connect (EADDRNOTAVAIL), so a wrong one costs an attempt, never a duplicate.
fn local_end(fd: c_int, a: &SockAddr, dst: &SockAddr) -> Option<SockAddr> {
    if !a.is_unspecified() {
        return Some(*a);
    }
    netlink::route_source(Ns::Of(fd), dst, &RouteContext::default())
        .ok()
        .map(|(s, _)| s.with_port(a.port()))
}

/// A fixed-port bind held back by `policy::share_fixed`: bind P now (SO_REUSEADDR on) only if
/// P's 4-tuple to `dst` is free. If it is taken the connect fails with EADDRNOTAVAIL, as the
/// kernel answers for a taken 4-tuple, and the socket never held P. Without an answer from
/// SOCK_DIAG P is bound and the kernel checks the 4-tuple.
fn bind_pending(fd: c_int, r: &Sock, dst: SockAddr) -> Result<(), c_int> {
    let Some(a) = r.app_addr() else {
        return Err(libc::EINVAL);
    };
    let _keep = KeepErrno::new();
    // Netlink lookups: no jump out of a signal handler meanwhile (a lease left busy).
    let _signals = sys::SignalsHeld::new();
    // A TIME_WAIT on that 4-tuple is the kernel's to reuse or refuse at connect.
    let taken = local_end(fd, &a, &dst)
        .and_then(|l| netlink::tcp_holder(Ns::Of(fd), &l, &dst).ok().flatten())
        .is_some_and(|state| state != TCP_TIME_WAIT);
    if taken {
        crate::debug!("connect(fd {fd}): {a} is already connected there");
        crate::stats::bind_busy_bites("connect", fd, &a, &dst);
        return Err(libc::EADDRNOTAVAIL);
    }
    r.enter(Phase::Free);
    if set_reuseaddr(fd, r, true).is_ok() && sys::bind(fd, &a).is_ok() {
        r.set_local(&a);
        r.enter(Phase::Bound);
        crate::stats::count(crate::stats::Event::TcpSharedFixedPort);
        return Ok(());
    }
    // A holder that does not share came in between: as the kernel's bind would have answered.
    restore_app_reuse(fd, r);
    crate::stats::bind_busy_bites("connect", fd, &a, &dst);
    Err(libc::EADDRNOTAVAIL)
}

/// A deferred bind(ip, 0) whose connect found no port. The kernel's connect never uses a port
/// that a bind() reserved (KERNEL.md), and such ports exist once sockets got their port from a
/// bind (a getsockname before connect, as Java does, or a fixed port). Bind one whose 4-tuple
/// to `dst` is free (SOCK_DIAG) and whose holders all share (the kernel checks SO_REUSEADDR and
/// refuses a listener), so that the connect that follows succeeds. False (the socket bound
/// again without a port, its address kept) when no port serves within MAX_PROBES.
fn choose_port(fd: c_int, r: &Sock, dst: &SockAddr) -> bool {
    let Some(a) = r.app_addr() else { return false };
    let _keep = KeepErrno::new();
    let _signals = sys::SignalsHeld::new();
    let (Some(nsp), Some(local)) = (ports::of_socket(fd), local_end(fd, &a, dst)) else {
        return false;
    };
    let ns = nsp.range();
    // The socket's own IP_LOCAL_PORT_RANGE narrows the choice, as it narrows the kernel's.
    let own = sys::get_int(fd, libc::IPPROTO_IP, crate::policy::IP_LOCAL_PORT_RANGE).unwrap_or(0);
    let range = ports::narrow(ns, own as u32);
    let _ = set_noport(fd, r, false);
    // Bounded: at true exhaustion every probe fails, and each costs a SOCK_DIAG lookup.
    for p in ports::shuffled(range).take(MAX_PROBES) {
        // Ports with any holder on this 4-tuple (a TIME_WAIT too) are skipped.
        if nsp.is_reserved(p)
            || netlink::tcp_holder(Ns::Of(fd), &local.with_port(p), dst) != Ok(None)
        {
            continue;
        }
        if set_reuseaddr(fd, r, true).is_ok() && sys::bind(fd, &a.with_port(p)).is_ok() {
            crate::debug!("connect(fd {fd}): no free port; {} shared", a.with_port(p));
            r.set_local(&a.with_port(p));
            r.enter(Phase::Bound);
            return true;
        }
    }
    // A failed bind clears the address: bind it again without a port.
    restore_app_reuse(fd, r);
    let _ = set_noport(fd, r, true);
    let _ = sys::bind(fd, &a);
    false
}

const TCP_TIME_WAIT: u8 = 6;
const MAX_PROBES: usize = 512;

/// A connect that failed with this errno is still under way (or done).
fn going(e: c_int) -> bool {
    matches!(
        e,
        libc::EINPROGRESS | libc::EALREADY | libc::EISCONN | libc::EINTR
    )
}

/// Counters for a deferred socket's connect: a port per 4-tuple, or none left to that
/// destination (EADDRNOTAVAIL, logged once per source address, naming the destination).
fn counted(r: &Sock, ok: bool, dst: Option<&SockAddr>) {
    let e = sys::errno();
    if ok || going(e) {
        crate::stats::count(crate::stats::Event::TcpPerTupleConnect);
    } else if e == libc::EADDRNOTAVAIL {
        if let Some(src) = r.app_addr().or_else(|| r.local()) {
            let _keep = KeepErrno::new();
            crate::stats::exhausted(crate::stats::Event::TcpExhausted, "TCP", &src, dst);
        }
    }
}

/// After the real connect of a socket whose bind(ip, 0) we deferred: only a connect that got
/// going ends the deferral. One that failed leaves the socket as the kernel alone would have:
/// - failed before the kernel picked a port (no route, wrong family): the socket is still bound
///   without a port, so a later getsockname, bind or IPV6_V6ONLY gets it its port first (the
///   kernel alone would have kept the port of bind(ip, 0));
/// - failed after (refused, timed out, no free 4-tuple): tcp_set_state(TCP_CLOSE) released the
///   port, as it releases the port of bind(ip, 0) in a run without us, and the socket may bind
///   again. The released port stays visible in getsockname, which is how we tell (one system
///   call, on failures only).
fn attempted(fd: c_int, r: &Sock, ok: bool) {
    if !ok && sys::errno() == libc::EISCONN {
        // Nothing happened: the socket's state still says connected (after a reset, for one),
        // while it is bound without a port.
        return;
    }
    if ok || going(sys::errno()) {
        r.enter(Phase::Free);
        return;
    }
    if sys::getsockname(fd).is_ok_and(|a| a.port() != 0) {
        r.enter(Phase::Released);
    }
}
