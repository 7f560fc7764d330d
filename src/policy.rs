//! Per-call policy shared by TCP and UDP: which sockets we manage, the program's view of the
//! options we change, and carrying out a deferred bind when the program needs its port.
//! Plain Rust over the state table and the real functions; the C symbols are in `hooks`.

use crate::addr::{ProgramAddr, SockAddr};
use crate::config::{self, BindBusy, GetsocknameMode};
use crate::decision::{Pass, Then, Verdict};
use crate::state::{self, *};
use crate::sys::{self, KeepErrno};
use crate::{netlink, real, tcp, udp};
use libc::{c_int, c_void, sockaddr, socklen_t};

// The option helpers live in `sockopt` (shared by tcp and udp); re-exported for older callers.
pub use crate::sockopt::{
    IP_BIND_ADDRESS_NO_PORT, IP_LOCAL_PORT_RANGE, restore_app_reuse, set_kernel, set_noport,
    set_reuseaddr, set_reuseport,
};

/// A socket() or socketpair() call returned `fd`: forget whatever the number meant before and
/// start a record if it is a TCP or UDP socket over IPv4/IPv6 and that protocol is switched on.
pub fn socket_created(fd: c_int, domain: c_int, ty: c_int, protocol: c_int) {
    state::forget(fd);
    let Some(cfg) = config::get().filter(|c| c.enabled) else {
        return;
    };
    let family = match domain {
        libc::AF_INET => 0,
        libc::AF_INET6 => V6,
        _ => return,
    };
    let kind = match (ty & 0xf, protocol) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) if cfg.tcp => TCP,
        (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) if cfg.udp => UDP,
        _ => return,
    };
    state::track(fd, kind | family);
}

/// bind(2), kernel first: the program's buffer is read only after the kernel has read it, so a
/// bad one gets the kernel's EFAULT, never a crash. With IP_BIND_ADDRESS_NO_PORT on, the kernel
/// binds bind(ip or wildcard, 0) without a port, chosen later per 4-tuple (TCP: by the kernel at
/// connect; UDP: by the lock), and ignores the option for bind(ip, P), which it does as asked.
/// One extra system call (two when the bind fails: the option is put back).
///
/// # Safety
/// `addr`/`len` as given to bind(2).
pub unsafe fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Verdict {
    let Some(r) = state::get_or_create(fd) else {
        return Verdict::Pass(Pass::NotOurs);
    };
    if r.is(Phase::Listening) {
        return Verdict::Pass(Pass::Server);
    }
    if r.is(Phase::Pending) {
        // A second bind after one we hold back: the kernel would refuse it (EINVAL) since the
        // first gave the socket P, so give it P first and let the kernel answer.
        materialize(fd, r);
        return Verdict::Pass(Pass::AlreadyBound);
    }
    if r.is(Phase::Released) {
        // After a disconnect released its port the socket may bind again (the kernel allows it
        // while the socket has no port): a new bind, as on a fresh socket.
        r.enter(Phase::Free);
    } else if r.deferred() {
        // A second bind: the kernel would refuse it (EINVAL) once the first had a port, so give
        // the socket its port first and let the kernel answer exactly.
        materialize(fd, r);
        return Verdict::Pass(Pass::AlreadyBound);
    }
    if r.has_port() || r.any(CONNECTED) {
        return Verdict::Pass(Pass::AlreadyBound);
    }
    if r.is_udp() && udp::lock_known_unavailable() {
        // Without SOCK_DIAG the lock never runs: a deferred bind would only move the kernel's
        // EADDRINUSE from bind to connect. (Known only: a bind pays for no probe.)
        return Verdict::Pass(Pass::LockUnavailable);
    }
    let program_defers = r.any(APP_NOPORT);
    if r.is_udp() {
        // A fixed port is bound with exactly the program's options (a server exactly as
        // exclusive, a reuseport group exactly the program's); bind(ip, 0) never with the
        // program's SO_REUSEPORT (sockopt::restore_app_reuse). Which one it is needs the port
        // before the call: read safely (a bad buffer stays the kernel's EFAULT), and only for a
        // program that set SO_REUSEPORT.
        let _ = set_reuseaddr(fd, r, r.any(APP_REUSEADDR));
        // SAFETY: the program's own arguments.
        let fixed = r.any(APP_REUSEPORT)
            && matches!(unsafe { SockAddr::read_program(addr, len) }.addr,
                        ProgramAddr::Inet(a) if a.port() != 0);
        if fixed && !program_defers {
            // SAFETY: forwarded from our caller.
            return unsafe { udp_bind_own_group(fd, r, addr, len) };
        }
        let _ = set_reuseport(fd, r, false);
    }
    // UDP is kernel first at bind too: bind(ip, 0) is the kernel's own while a port is free,
    // deferred only where the kernel finds none (below). TCP defers it always: the kernel then
    // picks the port per 4-tuple at connect.
    let udp_kernel_first = r.is_udp() && !program_defers;
    if set_noport(fd, r, !udp_kernel_first).is_err() {
        return Verdict::Pass(Pass::InternalError);
    }
    // SAFETY: the program's own arguments, unchanged: the kernel validates the address.
    let ret = unsafe { real::bind(fd, addr, len) };
    let e = sys::errno();
    let kernels = Verdict::answer(ret as isize, e);
    // SAFETY: after a bind that succeeded or found the port in use, the kernel has read `len`
    // bytes at `addr`.
    let bound = (ret == 0 || e == libc::EADDRINUSE)
        .then(|| unsafe { SockAddr::from_raw(addr, len) })
        .flatten();
    if ret == 0 {
        // AF_UNSPEC (accepted for 0.0.0.0 by IPv4) or an RFC 2133 IPv6 length: ask the kernel.
        match bound.or_else(|| sys::getsockname(fd).ok()) {
            Some(a) if a.port() == 0 && r.is_tcp() && program_defers => {
                crate::debug!("bind(fd {fd}): {a}: the program deferred the port itself");
            }
            Some(a) if a.port() == 0 && udp_kernel_first => {
                // The kernel's port: the socket is the kernel's (its connect opens the port).
                r.set_app_addr(&a);
                // The program asked for a reuseport group on a port of the kernel's choice (a
                // server's first worker): the port was chosen without the option (never a
                // connectx flow's), the group opens now for its other workers (issue 17).
                let _keep = KeepErrno::new();
                let group = r.any(APP_REUSEPORT) && set_reuseport(fd, r, true).is_ok();
                r.enter(if group { Phase::Group } else { Phase::Bound });
            }
            Some(a) if a.port() == 0 => {
                r.set_app_addr(&a);
                r.enter(if r.is_udp() && program_defers {
                    Phase::ProgramDeferred
                } else {
                    Phase::Deferred
                });
                crate::debug!(
                    "bind(fd {fd}): {a}: port deferred to connect (IP_BIND_ADDRESS_NO_PORT)"
                );
            }
            // The option stays on: the kernel ignores it on a socket with a port.
            Some(a) => bound_fixed(r, &a),
            None => r.enter(Phase::Bound),
        }
        return kernels;
    }
    if !program_defers {
        let _ = set_noport(fd, r, false);
    }
    match bound {
        Some(a) if a.port() == 0 && e == libc::EADDRINUSE && udp_kernel_first => {
            udp_bind_without_port(fd, r, a, kernels)
        }
        Some(a) if a.port() != 0 && e == libc::EADDRINUSE => {
            let may_share = if r.is_tcp() {
                tcp::may_share
            } else {
                udp::may_share
            };
            share_fixed(fd, r, a, may_share)
        }
        _ => kernels,
    }
}

/// UDP bind(ip, P) with the program's own SO_REUSEPORT. Tried first without the option: a
/// free port is the program's alone, its group then opened (one more setsockopt). Held: bound
/// with the option, as without connectx, and if connectx flows hold P (their port open to
/// sharing by connectx, which without it would have refused this bind) the socket's connects
/// are checked like every shared fixed port: no duplicate 4-tuple (issue 17).
///
/// # Safety
/// `addr`/`len` as given to bind(2).
unsafe fn udp_bind_own_group(
    fd: c_int,
    r: &Sock,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    let _ = set_noport(fd, r, false);
    let _ = set_reuseport(fd, r, false);
    // SAFETY: the program's own arguments, unchanged.
    let ret = unsafe { real::bind(fd, addr, len) };
    let e = sys::errno();
    let mut with_flows = false;
    let (ret, e) = if ret == 0 || e != libc::EADDRINUSE {
        (ret, e)
    } else {
        let _ = set_reuseport(fd, r, true);
        // SAFETY: as above.
        let ret = unsafe { real::bind(fd, addr, len) };
        let e = sys::errno();
        if ret == 0 {
            let port = sys::getsockname(fd).map_or(0, |a| a.port());
            let _keep = KeepErrno::new();
            if netlink::port_holders_for(fd, libc::IPPROTO_UDP, r.any(V6), port)
                .is_ok_and(|h| h.flows > h.foreign)
            {
                crate::debug!(
                    "bind(fd {fd}): port {port} carries connectx flows: checked at connect"
                );
                with_flows = true;
            }
        }
        (ret, e)
    };
    if ret == 0 {
        let _keep = KeepErrno::new();
        let _ = set_reuseport(fd, r, true);
        // SAFETY: the kernel has read `len` bytes at `addr` (the bind succeeded).
        if let Some(a) =
            unsafe { SockAddr::from_raw(addr, len) }.or_else(|| sys::getsockname(fd).ok())
        {
            bound_fixed(r, &a);
            if with_flows {
                r.enter(Phase::Shared);
            }
        }
    }
    Verdict::answer(ret as isize, e)
}

/// UDP bind(ip, 0) found no free port (the kernel's EADDRINUSE): where the lock can run, bind
/// the address without a port (IP_BIND_ADDRESS_NO_PORT), so that the lock gives it one per
/// 4-tuple at connect; else, or with CONNECTX_BIND_BUSY=kernel, the kernel's EADDRINUSE.
fn udp_bind_without_port(fd: c_int, r: &Sock, a: SockAddr, kernels: Verdict) -> Verdict {
    if config::get().is_some_and(|c| c.bind_busy == BindBusy::Kernel) || !udp::lock_available() {
        return kernels;
    }
    let _keep = KeepErrno::new();
    if set_noport(fd, r, true).is_err() || sys::bind(fd, &a).is_err() {
        let _ = set_noport(fd, r, false);
        return kernels;
    }
    r.set_app_addr(&a);
    r.enter(Phase::Deferred);
    crate::debug!("bind(fd {fd}): {a}: no free port; deferred to connect (the UDP lock)");
    Verdict::done(0)
}

/// # Safety
/// `addr`/`len` as given to connect(2).
pub unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Verdict {
    let Some(r) = state::get(fd) else {
        // A TCP socket with no record had nothing done to it: the kernel shares ports itself.
        return Verdict::Pass(if state::is_lazy(fd) {
            Pass::KernelSharesPorts
        } else {
            Pass::NotOurs
        });
    };
    if r.is(Phase::Listening) {
        return Verdict::Pass(Pass::Server);
    }
    if r.is_tcp() {
        // TCP needs nothing from the address before the call but for a held-back bind; the
        // family is read only after the kernel has read it (`after_connect`).
        // SAFETY: the program's own arguments, copied safely (asked only on rare paths).
        return tcp::connect(fd, r, || unsafe { tcp_destination(addr, len) });
    }
    // SAFETY: the program's own arguments.
    unsafe { udp::connect(fd, r, addr, len) }
}

/// The destination of a TCP connect, read safely (None: not an address, or unreadable).
///
/// # Safety
/// `addr`/`len` as given to connect(2).
unsafe fn tcp_destination(addr: *const sockaddr, len: socklen_t) -> Option<SockAddr> {
    // SAFETY: the program's own arguments, copied safely.
    match unsafe { SockAddr::read_program(addr, len) }.addr {
        ProgramAddr::Inet(a) => Some(a),
        _ => None,
    }
}

/// After the program's connect that `connect` asked the hook to make (`Verdict::Call`).
///
/// # Safety
/// `addr`/`len` as given to connect(2); the call returned `ret` with errno `e`.
pub unsafe fn after_connect(
    fd: c_int,
    then: Then,
    ret: isize,
    e: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    let Some(r) = state::get(fd) else {
        // Closed meanwhile (a signal handler): the program's own answer.
        return Verdict::answer(ret, e);
    };
    // TCP reads the family only after the kernel has read the address (AF_UNSPEC is a
    // disconnect, not a connect); the destination only on rare paths, safely.
    tcp::after_connect(
        fd,
        r,
        then,
        (ret, e),
        // SAFETY: the kernel read `len` bytes at `addr` unless it answered EFAULT/EINVAL.
        || unsafe { SockAddr::family_of(addr, len) } == Some(libc::AF_UNSPEC),
        // SAFETY: the program's own arguments.
        || unsafe { tcp_destination(addr, len) },
    )
}

/// After a send with MSG_FASTOPEN that `send` asked the hook to make (`Verdict::Call`).
pub fn after_send(fd: c_int, then: Then, ret: isize, e: c_int) -> Verdict {
    match state::get(fd) {
        Some(r) => tcp::after_connect(fd, r, then, (ret, e), || false, || None),
        None => Verdict::answer(ret, e),
    }
}

pub fn listen(fd: c_int) -> Verdict {
    let Some(r) = state::get(fd) else {
        return Verdict::Pass(Pass::NotOurs);
    };
    if r.is_tcp() {
        materialize(fd, r);
        // A bind held back (PENDING) that cannot be made now: the kernel's listen autobinds.
        // The server keeps exactly the exclusivity it asked for: listen() re-checks conflicts with
        // the socket's current SO_REUSEADDR, so it must be the program's own value.
        restore_app_reuse(fd, r);
        // Accepted sockets inherit the listener's options: no IP_BIND_ADDRESS_NO_PORT of ours
        // (policy::bind leaves it on after a fixed port) may reach them.
        let _ = set_noport(fd, r, r.any(APP_NOPORT));
        r.enter(Phase::Listening);
    }
    Verdict::Pass(Pass::Server)
}

/// getsockname between bind(ip, 0) and connect on a socket whose bind found no free port:
/// by default the socket gets its real port now if one has come free (a server reading its port
/// before listen must see it); otherwise it shows (ip, 0).
/// A fixed-port bind held back (PENDING) shows the address the program bound, as the kernel's
/// would, without binding it: the kernel answers first (it checks the buffers and writes an
/// unbound socket's address), then the address goes into the bytes it wrote.
///
/// # Safety
/// `addr`/`len` as given to getsockname(2).
pub unsafe fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> Verdict {
    let Some(r) = state::get(fd) else {
        return Verdict::Pass(Pass::NotOurs);
    };
    if let (true, Some(a)) = (r.is(Phase::Pending), r.app_addr()) {
        let mut given = [0u8; std::mem::size_of::<socklen_t>()];
        // SAFETY: the program's own argument, copied safely.
        let readable = unsafe { sys::copy_from_program(len.cast::<u8>(), &mut given) }.is_ok();
        // SAFETY: the program's own arguments, unchanged.
        let ret = unsafe { real::getsockname(fd, addr, len) };
        let result = Verdict::done(ret);
        if ret == 0 && readable && !addr.is_null() {
            let raw = a.to_raw();
            // SAFETY: the kernel just wrote min(given, *len) bytes at addr and wrote *len.
            unsafe {
                let n = (socklen_t::from_ne_bytes(given).min(*len).min(raw.len())) as usize;
                std::ptr::copy_nonoverlapping(raw.ptr().cast::<u8>(), addr.cast::<u8>(), n);
            }
        }
        return result;
    }
    if matches!(r.phase(), Phase::Deferred | Phase::ProgramDeferred)
        && config::get().is_some_and(|c| c.getsockname == GetsocknameMode::Bind)
    {
        materialize(fd, r);
    }
    Verdict::Pass(Pass::NothingToDo)
}

/// A send with a destination (sendto, sendmsg, sendmmsg) or a receive on a socket whose bind we
/// deferred: the kernel would autobind without the program's options, so bind as it asked first.
/// TCP Fast Open (MSG_FASTOPEN) is an implicit connect: the hook makes the program's send
/// (`Verdict::Call`), then `after_send`.
/// `has_destination` is asked only for a deferred UDP socket (it reads the caller's msghdr).
pub fn send(fd: c_int, has_destination: impl FnOnce() -> bool, flags: c_int) -> Verdict {
    let Some(r) = state::get(fd) else {
        return Verdict::Pass(Pass::NotOurs);
    };
    if r.is_tcp() {
        if flags & libc::MSG_FASTOPEN != 0 {
            // A held-back fixed port is bound first (the destination is not read here); the
            // kernel checks the 4-tuple.
            if r.is(Phase::Pending) {
                materialize(fd, r);
            }
            return tcp::connect(fd, r, || None);
        }
        return Verdict::Pass(Pass::NothingToDo);
    }
    if !(r.is(Phase::Pending) || r.deferred()) || !has_destination() {
        return Verdict::Pass(Pass::NothingToDo);
    }
    if r.is(Phase::Pending) {
        // A shared fixed port held back, used without connect: bound now (exclusive until its
        // connect), or, held by others this moment, the error its bind would have had.
        materialize(fd, r);
        if !r.has_port() {
            return Verdict::fail(libc::EADDRINUSE);
        }
    }
    if r.deferred() {
        materialize(fd, r);
        if r.is(Phase::Deferred) {
            // No port for a socket that will not connect (an unconnected socket cannot share
            // one): the kernel would have refused its bind(ip, 0), so the send gets that error.
            // Its autobind would answer EAGAIN, which programs retry (dnsmasq for a second per
            // send, stalling every query); EADDRINUSE is an error they handle.
            crate::debug!("send(fd {fd}): no free port for an unconnected socket");
            crate::stats::udp_bind_busy_bites(fd, r.app_addr().as_ref());
            return Verdict::fail(libc::EADDRINUSE);
        }
    }
    Verdict::Pass(Pass::NothingToDo)
}

/// Whether the program's msghdr names a destination (msg_name not NULL), read safely: an
/// unreadable msghdr is the kernel's EFAULT to give.
///
/// # Safety
/// `msg` is the program's own argument (see `sys::copy_from_program`).
pub unsafe fn names_destination(msg: *const libc::msghdr) -> bool {
    if msg.is_null() {
        return false;
    }
    let mut name = [0u8; std::mem::size_of::<*mut c_void>()];
    let at = std::mem::offset_of!(libc::msghdr, msg_name);
    // SAFETY: the program's own msghdr argument.
    unsafe { sys::copy_from_program(msg.cast::<u8>().wrapping_add(at), &mut name) }.is_ok()
        && name != [0; std::mem::size_of::<*mut c_void>()]
}

pub fn before_recv(fd: c_int) -> Verdict {
    if let Some(r) = state::get(fd).filter(|r| r.is_udp() && r.is(Phase::Pending)) {
        materialize(fd, r);
    }
    // A port released by a disconnect stays released: the kernel does not autobind on receive.
    if let Some(r) = state::get(fd)
        .filter(|r| r.is_udp() && matches!(r.phase(), Phase::Deferred | Phase::ProgramDeferred))
    {
        materialize(fd, r);
    }
    Verdict::Pass(Pass::NothingToDo)
}

/// Carries out a deferred bind(ip, 0) with the program's own options: clear our
/// IP_BIND_ADDRESS_NO_PORT and bind the same address again, which the kernel allows while the
/// socket has no port (KERNEL.md). On failure the kernel autobinds later, as it would anyway.
/// A deferral the program asked for itself (UDP with its own NO_PORT) is left alone.
///
/// Where the kernel finds no port now, the socket stays deferred: bound again without a port,
/// so it keeps the program's address (a failed bind clears it, and the connection would then
/// leave from another source) and getsockname shows (ip, 0), as the kernel's does.
///
/// A fixed-port bind held back (PENDING) is made now with SO_REUSEADDR, then cleared: the port
/// is the socket's alone until it connects. If that fails, the socket stays unbound.
pub fn materialize(fd: c_int, r: &Sock) {
    if r.is(Phase::Pending) {
        r.enter(Phase::Free);
        let Some(a) = r.app_addr() else { return };
        let _keep = KeepErrno::new();
        // TCP shares with SO_REUSEADDR; UDP with SO_REUSEPORT, the lock's switch, which the
        // kernel keeps to sockets of one user. Cleared at once: nobody may join until connect.
        let share = if r.is_tcp() {
            set_reuseaddr
        } else {
            set_reuseport
        };
        let shared = share(fd, r, true).is_ok() && sys::bind(fd, &a).is_ok();
        if r.is_tcp() {
            restore_app_reuse(fd, r);
        } else {
            let _ = set_reuseport(fd, r, false);
        }
        if shared {
            bound_fixed(r, &a);
            if r.is_udp() {
                r.enter(Phase::Shared);
            }
        }
        return;
    }
    if !matches!(r.phase(), Phase::Deferred | Phase::Released) {
        return;
    }
    r.enter(Phase::Free);
    let Some(a) = r.app_addr() else { return };
    let _keep = KeepErrno::new();
    let _ = set_noport(fd, r, false);
    if r.is_udp() {
        // The program's SO_REUSEADDR, but not its SO_REUSEPORT: with it the kernel's choice of
        // a port for bind(ip, 0) may land on a port the UDP lock shares, whose flows would then
        // take this socket's replies (see udp::kernel_connected).
        let _ = set_reuseaddr(fd, r, r.any(APP_REUSEADDR));
        let _ = set_reuseport(fd, r, false);
    }
    match sys::bind(fd, &a) {
        Ok(()) => {
            r.set_local(&sys::getsockname(fd).unwrap_or(a));
            r.enter(Phase::Bound);
        }
        Err(e) => {
            crate::debug!("fd {fd}: deferred bind to {a} failed (errno {e}); still deferred");
            if set_noport(fd, r, true).is_ok() && sys::bind(fd, &a).is_ok() {
                r.enter(Phase::Deferred);
            }
        }
    }
}

/// bind(ip, P) failed with EADDRINUSE: only if `may_share` accepts the port's current holders
/// (SOCK_DIAG dump), and CONNECTX_BIND_BUSY is `share`, P is shared.
/// - TCP: the bind is held back (PENDING, the socket stays unbound) until connect, which binds P
///   only if P's 4-tuple to the destination is free (`tcp::connect`): a socket whose connect
///   fails never holds P, as it would not have without us.
/// - UDP: the same (`udp::shared::connect_pending`); P is bound with SO_REUSEPORT, cleared at
///   once, so nobody else may join until this socket connects.
fn share_fixed(
    fd: c_int,
    r: &Sock,
    a: SockAddr,
    may_share: fn(&netlink::Holders) -> bool,
) -> Verdict {
    // A dump through a temporary netlink socket: no jump out of a signal handler meanwhile.
    let _signals = crate::sys::SignalsHeld::new();
    let protocol = if r.is_tcp() {
        libc::IPPROTO_TCP
    } else {
        libc::IPPROTO_UDP
    };
    if !r.any(APP_REUSEADDR | APP_REUSEPORT | K_REUSEADDR)
        && config::get().is_some_and(|c| c.bind_busy == BindBusy::Share)
        && netlink::port_holders_for(fd, protocol, r.any(V6), a.port()).is_ok_and(|h| may_share(&h))
    {
        // Held back (the socket stays unbound) until connect, which binds P only if P's 4-tuple
        // to the destination is free (`tcp::connect`, `udp::shared::connect_pending`): a socket
        // whose connect fails never holds P, as it would not have without us (issue 17: a UDP
        // socket that held P after a failed connect kept every later bind of P out).
        r.set_app_addr(&a);
        r.enter(Phase::Pending);
        crate::debug!("bind(fd {fd}): {a} is held by connections: shared at connect");
        if r.is_udp() {
            // (TCP counts it when its connect binds P: `tcp::bind_pending`.)
            crate::stats::count(crate::stats::Event::UdpSharedFixedPort);
        }
        return Verdict::done(0);
    }
    Verdict::fail(libc::EADDRINUSE)
}

fn bound_fixed(r: &Sock, a: &SockAddr) {
    r.set_app_addr(a);
    r.set_local(a);
    r.enter(Phase::Bound);
}

/// The value the kernel just accepted for an int option, read as the kernel reads it: an int
/// when `len` holds one; for IPPROTO_IP options also a single byte, and 0 when `len` is 0.
///
/// # Safety
/// The kernel has just accepted `val`/`len` for this option (so it read those bytes).
unsafe fn option_value(level: c_int, val: *const c_void, len: socklen_t) -> c_int {
    if val.is_null() {
        return 0;
    }
    // SAFETY: per the contract, the kernel read these bytes.
    unsafe {
        if len as usize >= std::mem::size_of::<c_int>() {
            val.cast::<c_int>().read_unaligned()
        } else if level == libc::IPPROTO_IP && len >= 1 {
            val.cast::<u8>().read() as c_int
        } else {
            0
        }
    }
}

fn managed_bits(level: c_int, name: c_int) -> Option<(u32, u32)> {
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => Some((APP_REUSEADDR, K_REUSEADDR)),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT) => Some((APP_REUSEPORT, K_REUSEPORT)),
        (libc::IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) => Some((APP_NOPORT, K_NOPORT)),
        _ => None,
    }
}

/// # Safety
/// Arguments as given to setsockopt(2).
pub unsafe fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> Verdict {
    let managed = managed_bits(level, name);
    // Only the options we manage need a record for a TCP socket that has none yet.
    let r = if managed.is_some() {
        state::get_or_create(fd)
    } else {
        state::get(fd)
    };
    let Some(r) = r else {
        return Verdict::Pass(Pass::NotOurs);
    };
    if (level, name) == (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
        && matches!(r.phase(), Phase::Deferred | Phase::ProgramDeferred)
    {
        // The kernel refuses to change IPV6_V6ONLY once the socket has its port (EINVAL), which
        // after bind(ip, 0) it would have: give it the port, then the kernel answers.
        materialize(fd, r);
    }
    if let Some((app, k)) = managed {
        let ret;
        if app == APP_REUSEPORT
            && r.is_udp()
            && (!r.has_port() || matches!(r.phase(), Phase::Ours | Phase::Shared))
        {
            // SO_REUSEPORT is the UDP lock's own switch: held back while the socket has no port
            // (the kernel's autobind could then land on a port the lock shares: a duplicate
            // 4-tuple, KERNEL.md) and while the lock manages the port; the program's value is
            // put in when the kernel gives the socket a port of its own (restore_app_reuse).
            // The kernel still checks the arguments, through SO_REUSEADDR (same checks for an
            // inet socket: optlen >= sizeof(int), a readable value), whose own value is then put
            // back at once: SO_REUSEADDR has no owner check, so it must stay the program's.
            // SAFETY: caller's arguments, unchanged.
            ret = unsafe { real::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, val, len) };
            if ret == 0 {
                // SAFETY: the kernel just accepted val/len for this option.
                let on = unsafe { option_value(level, val, len) } != 0;
                r.put(app, on);
                r.put(K_REUSEADDR, on);
                let _keep = KeepErrno::new();
                let _ = set_reuseaddr(fd, r, r.any(APP_REUSEADDR));
            }
        } else {
            // SAFETY: caller's arguments, unchanged.
            ret = unsafe { real::setsockopt(fd, level, name, val, len) };
            if ret == 0 {
                // SAFETY: the kernel just accepted val/len for this option.
                let on = unsafe { option_value(level, val, len) } != 0;
                r.put(app, on);
                r.put(k, on);
            }
        }
        return Verdict::done(ret);
    }
    // SAFETY: caller's arguments, unchanged.
    let ret = unsafe { real::setsockopt(fd, level, name, val, len) };
    if ret == 0 && r.is_udp() {
        match (level, name) {
            (libc::IPPROTO_IP, IP_LOCAL_PORT_RANGE) => {
                // The lock chooses UDP ports within the socket's range (it sets the option
                // itself, to one port at a time, and puts this value back).
                // SAFETY: the kernel just accepted val/len for this option.
                let range = unsafe { option_value(level, val, len) } as u32;
                r.port_range
                    .store(range, std::sync::atomic::Ordering::Release);
            }
            (libc::SOL_SOCKET, libc::SO_MARK | libc::SO_BINDTODEVICE | libc::SO_BINDTOIFINDEX)
            | (libc::IPPROTO_IP, libc::IP_TOS)
            | (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => r.set(CONTEXT),
            _ => {}
        }
    }
    Verdict::done(ret)
}

/// getsockopt answers the program's own value of every option we change behind its back.
///
/// # Safety
/// Arguments as given to getsockopt(2).
pub unsafe fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> Verdict {
    let Some(r) = state::get(fd) else {
        return Verdict::Pass(Pass::NotOurs);
    };
    let Some((app, _)) = managed_bits(level, name) else {
        return Verdict::Pass(Pass::OtherOption);
    };
    // The kernel checks the arguments and writes its answer; we then put the program's value in
    // the bytes it wrote (an int, or 1 byte when the program asked for less).
    // SAFETY: caller's arguments, unchanged.
    let ret = unsafe { real::getsockopt(fd, level, name, val, len) };
    if ret == 0 && !val.is_null() && !len.is_null() {
        let _keep = KeepErrno::new();
        // SAFETY: the kernel just wrote *len bytes (at most 4) to val and wrote *len.
        unsafe {
            let n = (*len as usize).min(4);
            let v = (r.any(app) as c_int).to_ne_bytes();
            std::ptr::copy_nonoverlapping(v.as_ptr(), val.cast::<u8>(), n);
        }
    }
    Verdict::done(ret)
}
