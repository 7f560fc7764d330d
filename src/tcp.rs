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
use crate::netlink;
use crate::policy::{IP_BIND_ADDRESS_NO_PORT, set_kernel};
use crate::real;
use crate::state::*;
use crate::sys::{self, errno};
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
    if a.port() == 0 {
        if r.any(APP_NOPORT) {
            return Verdict::Pass(Pass::ProgramDefers);
        }
        if set_kernel(
            fd,
            r,
            K_NOPORT,
            libc::IPPROTO_IP,
            IP_BIND_ADDRESS_NO_PORT,
            true,
        )
        .is_err()
        {
            return Verdict::Pass(Pass::InternalError);
        }
        // SAFETY: the program's own arguments, unchanged.
        let ret = unsafe { real::bind(fd, addr, len) };
        let result = Verdict::done(ret);
        if ret == 0 {
            r.set_addr(&a);
            r.set(DEFERRED);
            crate::debug!("bind(fd {fd}): {a}: port deferred to connect (IP_BIND_ADDRESS_NO_PORT)");
        } else {
            let _ = set_kernel(
                fd,
                r,
                K_NOPORT,
                libc::IPPROTO_IP,
                IP_BIND_ADDRESS_NO_PORT,
                false,
            );
        }
        return result;
    }
    // SAFETY: the program's own arguments, unchanged.
    let ret = unsafe { real::bind(fd, addr, len) };
    if ret == 0 {
        r.set_addr(&a);
        r.set(HAS_PORT);
        return Verdict::done(0);
    }
    let failed = Verdict::done(ret);
    let e = errno();
    if e == libc::EADDRINUSE
        && !r.any(APP_REUSEADDR | K_REUSEADDR)
        && port_carries_flows(r, a.port())
    {
        let shared = set_kernel(
            fd,
            r,
            K_REUSEADDR,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            true,
        )
        .is_ok()
            && sys::bind(fd, &a).is_ok();
        // Back to the program's value at once: nobody else may join until we connect.
        let _ = set_kernel(
            fd,
            r,
            K_REUSEADDR,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            false,
        );
        if shared {
            crate::debug!("fd {fd}: bind {a} shares a port held by outgoing connections");
            r.set_addr(&a);
            r.set(HAS_PORT);
            return Verdict::done(0);
        }
    }
    failed
}

/// True when some holder of `port` is a connection or TIME_WAIT and none listens. A port held
/// only by sockets that bound it (a server before listen) shows nothing here and is not shared.
fn port_carries_flows(r: &Sock, port: u16) -> bool {
    let families: &[c_int] = if r.any(V6) {
        &[libc::AF_INET6, libc::AF_INET]
    } else {
        &[libc::AF_INET]
    };
    let mut flows = 0;
    for &f in families {
        match netlink::holders(libc::IPPROTO_TCP, f, port) {
            Ok(h) if h.listening > 0 => return false,
            Ok(h) => flows += h.flows,
            Err(e) => {
                crate::debug!(
                    "SOCK_DIAG dump for TCP port {port} failed (errno {e}); not sharing it"
                );
                return false;
            }
        }
    }
    flows > 0
}

/// connect, or sendto/sendmsg with MSG_FASTOPEN (an implicit connect).
pub fn connect(fd: c_int, r: &Sock) -> Verdict {
    if r.any(DEFERRED) {
        r.clear(DEFERRED);
        return Verdict::Pass(Pass::KernelPicksPort);
    }
    if !r.any(HAS_PORT) || r.any(CONNECTED) {
        return Verdict::Pass(Pass::KernelSharesPorts);
    }
    r.set(CONNECTED);
    let _ = set_kernel(
        fd,
        r,
        K_REUSEADDR,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        true,
    );
    Verdict::Pass(Pass::OpenedFixedPort)
}
