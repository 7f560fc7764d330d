//! TCP policy (SPEC "The three uses of an outgoing connection").
//!
//! - bind(ip or wildcard, 0): bind with IP_BIND_ADDRESS_NO_PORT so the kernel picks the port at
//!   connect per 4-tuple (one extra system call; `policy::bind`, shared with UDP). The program's
//!   own NO_PORT (curl) is left alone.
//! - bind(ip, P): bind as asked. Only if that fails with EADDRINUSE, and the port's holders are
//!   outgoing connections (`may_share`: not a server, not a socket that merely bound it), bind
//!   again with SO_REUSEADDR and then clear it: the port stays exclusive until this socket
//!   connects.
//! - connect on a fixed port: set SO_REUSEADDR first, so later sockets may use the port for
//!   other destinations (and its TIME_WAIT inherits it). The kernel still refuses a second
//!   connection to the same destination (EADDRNOTAVAIL).

use crate::decision::{Pass, Verdict};
use crate::policy::{restore_app_reuse, set_reuseaddr};
use crate::state::*;
use crate::sys::KeepErrno;
use crate::{features, netlink, sys};
use libc::c_int;

/// A fixed port held by others may be shared only if its holders are connections or TIME_WAIT:
/// none listens and none merely bound it (a server before listen; Linux 6.5+ dumps bound-only
/// sockets; before that no sharing at all: `features::tcp_fixed_sharing`).
pub fn may_share(h: &netlink::Holders) -> bool {
    h.flows > 0 && h.listening == 0 && h.unconnected == 0 && features::tcp_fixed_sharing()
}

/// connect, or sendto/sendmsg with MSG_FASTOPEN (an implicit connect): `real` makes the
/// program's own call; `disconnects`, asked after it, says whether it was connect(AF_UNSPEC).
pub fn connect(
    fd: c_int,
    r: &Sock,
    real: impl FnOnce() -> isize,
    disconnects: impl FnOnce() -> bool,
) -> Verdict {
    if r.any(LISTENING) {
        // A server keeps the kernel's semantics (a send with MSG_FASTOPEN reaches here too).
        return Verdict::Pass(Pass::Server);
    }
    if r.any(DEFERRED) {
        // The kernel picks the port now, per 4-tuple.
        let ret = real();
        let result = Verdict::answer(ret, sys::errno());
        // A disconnect leaves an unconnected socket as it was: still bound without a port.
        if !(ret == 0 && disconnects()) {
            attempted(fd, r, ret >= 0);
        }
        return result;
    }
    if !r.any(HAS_PORT) || r.any(CONNECTED) {
        return Verdict::Pass(Pass::KernelSharesPorts);
    }
    if !features::tcp_fixed_sharing() {
        // No other socket may share the port (may_share), so opening it serves nobody.
        return Verdict::Pass(Pass::KernelLacksFeature);
    }
    // A fixed port: open it to other destinations before the connect.
    let _ = set_reuseaddr(fd, r, true);
    let ret = real();
    let result = Verdict::answer(ret, sys::errno());
    if (ret == 0 && !disconnects()) || (ret < 0 && going(sys::errno())) {
        r.set(CONNECTED);
        crate::debug!("connect(fd {fd}): fixed source port opened to other destinations");
    } else {
        // Still unconnected (a disconnect, or a connect that failed): exclusive again, as the
        // program left it.
        let _keep = KeepErrno::new();
        restore_app_reuse(fd, r);
    }
    result
}

/// A connect that failed with this errno is still under way (or done).
fn going(e: c_int) -> bool {
    matches!(
        e,
        libc::EINPROGRESS | libc::EALREADY | libc::EISCONN | libc::EINTR
    )
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
        r.clear(DEFERRED | RELEASED);
        return;
    }
    if sys::getsockname(fd).is_ok_and(|a| a.port() != 0) {
        r.set(RELEASED);
    }
}
