//! TCP policy (SPEC "The three uses of an outgoing connection").
//!
//! - bind(ip or wildcard, 0): bind with IP_BIND_ADDRESS_NO_PORT so the kernel picks the port at
//!   connect per 4-tuple (one extra system call). The program's own NO_PORT (curl) is left alone.
//! - bind(ip, P): bind as asked. Only if that fails with EADDRINUSE, and the port's holders are
//!   outgoing connections (not a server, not a socket that merely bound it), bind again with
//!   SO_REUSEADDR and then clear it: the port stays exclusive until this socket connects.
//! - connect on a fixed port: set SO_REUSEADDR first, so later sockets may use the port for
//!   other destinations (and its TIME_WAIT inherits it). The kernel still refuses a second
//!   connection to the same destination (EADDRNOTAVAIL).

use crate::addr::SockAddr;
use crate::decision::{Pass, Verdict};
use crate::policy::{bind_deferred, bind_fixed, set_reuseaddr};
use crate::state::*;
use crate::{real, sys};
use libc::{c_int, sockaddr, socklen_t};

/// # Safety
/// `addr`/`len` are the program's arguments to bind(2), already parsed into `a`.
pub unsafe fn bind(
    fd: c_int,
    r: &Sock,
    a: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    if a.port() != 0 {
        // Share only a port whose holders are connections or TIME_WAIT: none listens and none
        // merely bound it (a server before listen; Linux 6.5+ dumps bound-only sockets).
        // SAFETY: forwarded caller contract.
        return unsafe {
            bind_fixed(fd, r, a, addr, len, |h| {
                h.flows > 0 && h.listening == 0 && h.unconnected == 0
            })
        };
    }
    if r.any(APP_NOPORT) {
        return Verdict::Pass(Pass::ProgramDefers);
    }
    // SAFETY: forwarded caller contract.
    unsafe { bind_deferred(fd, r, a, addr, len) }
}

/// connect (with the program's arguments for the real call), or sendto/sendmsg with
/// MSG_FASTOPEN (an implicit connect, `None`).
pub fn connect(fd: c_int, r: &Sock, real_connect: Option<(*const sockaddr, socklen_t)>) -> Verdict {
    if r.any(DEFERRED) {
        let Some((addr, len)) = real_connect else {
            // MSG_FASTOPEN: the kernel picks the port in this send.
            r.clear(DEFERRED);
            return Verdict::Pass(Pass::KernelPicksPort);
        };
        // The kernel picks the port now. Only a connect that gets going ends the deferral: after
        // one refused at once the socket is as before, bound without a port (a later bind or
        // getsockname then gets the kernel's answer for a socket that has its port).
        // SAFETY: the program's own arguments, unchanged.
        let ret = unsafe { real::connect(fd, addr, len) };
        let result = Verdict::done(ret);
        if ret == 0
            || matches!(
                sys::errno(),
                libc::EINPROGRESS | libc::EALREADY | libc::EISCONN
            )
        {
            r.clear(DEFERRED);
        }
        return result;
    }
    if !r.any(HAS_PORT) || r.any(CONNECTED) {
        return Verdict::Pass(Pass::KernelSharesPorts);
    }
    r.set(CONNECTED);
    let _ = set_reuseaddr(fd, r, true);
    Verdict::Pass(Pass::OpenedFixedPort)
}
