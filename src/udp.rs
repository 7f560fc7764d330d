//! UDP: "SO_REUSEADDR as a lock" (SPEC "UDP: the REUSEADDR lock"; lab/connectx_udp.py).
//!
//! For connect(dst): source address = the bound one, else the route's preferred source; for a
//! port from a random start over the range (`ports::shuffled`): bind the port (on the program's
//! address, else the wildcard, so the kernel sets the source at connect as for its own sockets)
//! with SO_REUSEADDR set, clear it (the lock: nobody can bind the port now), ask SOCK_DIAG which
//! socket would receive from dst on (src, port) — it must be this one (SO_COOKIE) —, connect,
//! set SO_REUSEADDR again (the unlock: the port is open to flows to other destinations). A lost
//! check means another socket owns that 4-tuple: the port is bound and cannot be unbound, so a
//! fresh socket with the program's options is swapped in over its fd (and its dups) and the
//! search goes on, now asking SOCK_DIAG before each bind (`flows` keeps that hint a second).
//! Every port taken: EAGAIN, as the kernel says for UDP exhaustion.
//!
//! bind(ip, 0) is deferred with IP_BIND_ADDRESS_NO_PORT: the kernel checks and keeps the address;
//! the port comes from the lock at connect (or from `policy::materialize` if the program needs
//! it earlier). bind(ip, P) is done as asked: a server keeps its exclusivity.

use crate::addr::SockAddr;
use crate::decision::{Pass, Verdict};
use crate::netlink::{self, TCP_ESTABLISHED};
use crate::policy::{IP_BIND_ADDRESS_NO_PORT, restore_app_reuse, set_reuseaddr, set_reuseport};
use crate::state::*;
use crate::sys::{self, KeepErrno, errno};
use crate::{flows, log, ports, real, route};
use libc::{c_int, sockaddr, socklen_t};
use std::sync::atomic::{AtomicBool, Ordering::*};

/// Lost races retried on fresh sockets before giving up with EAGAIN.
const MAX_SWAPS: u32 = 32;

/// A fixed port held by others may be shared only with connected sockets: an unconnected
/// holder is a server, or a socket between bind and connect.
pub fn may_share(h: &netlink::Holders) -> bool {
    h.flows > 0 && h.unconnected == 0
}

static DIAG_BROKEN: AtomicBool = AtomicBool::new(false);
static WARNED_DIAG: AtomicBool = AtomicBool::new(false);
static WARNED_RANGE: AtomicBool = AtomicBool::new(false);

/// False when SOCK_DIAG cannot be used by this process (asked once, at the first UDP bind or
/// connect, by opening the pooled netlink socket): UDP sockets then get the kernel's behaviour
/// throughout, from bind on, and one warning is logged.
pub fn lock_available() -> bool {
    if DIAG_BROKEN.load(Relaxed) || !crate::features::udp_lock() {
        return false;
    }
    match netlink::check_diag() {
        Err(e) if diag_unavailable_for_good(e) => {
            DIAG_BROKEN.store(true, Relaxed);
            lock_unavailable(&WARNED_DIAG, "SOCK_DIAG", e);
            false
        }
        _ => true,
    }
}

/// A socket can be replaced by a fresh one (`recreate`) only if every option the program set was
/// recorded.
fn swappable(r: &Sock) -> bool {
    !r.any(OPTS_OVERFLOW)
}

/// Errors that mean SOCK_DIAG is not available to this process at all (seccomp, LSM, kernel
/// without inet_diag): stop trying rather than bind ports we cannot check.
fn diag_unavailable_for_good(e: c_int) -> bool {
    matches!(
        e,
        libc::EPERM
            | libc::EACCES
            | libc::EAFNOSUPPORT
            | libc::EPROTONOSUPPORT
            | libc::ENOSYS
            | libc::EOPNOTSUPP
    )
}

fn lock_unavailable(flag: &AtomicBool, what: &str, e: c_int) -> Verdict {
    log::once(
        flag,
        crate::config::Level::Warn,
        format_args!(
            "UDP lock unavailable ({what}, errno {e}): using the kernel's own port choice"
        ),
    );
    Verdict::Pass(Pass::LockUnavailable)
}

/// The kernel has no route to `dst` (RTM_GETROUTE failed): its own connect gives the program
/// the error (ENETUNREACH, or EINVAL for a link-local address without a scope), so this is not
/// worth a warning.
fn no_route(fd: c_int, dst: &SockAddr, e: c_int) -> Verdict {
    crate::debug!("connect(fd {fd}): no route to {dst} (errno {e})");
    Verdict::Pass(Pass::NoRoute)
}

/// # Safety
/// `addr`/`len` are the program's arguments to connect(2), already parsed into `dst`.
pub unsafe fn connect(
    fd: c_int,
    r: &Sock,
    dst: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    if !lock_available() {
        return Verdict::Pass(Pass::LockUnavailable);
    }
    // A port kept after a disconnect (see `disconnected`) is settled by this connect.
    r.clear(KEPT);
    if r.any(OUR_PORT) && swappable(r) {
        if let Some(v) = reconnect_own_port(fd, r, dst, addr, len) {
            return v;
        }
        // The lock chose this socket's port for another destination, and (local, dst) is taken:
        // like the kernel's autobound port it is not the program's, so run the lock afresh on a
        // fresh socket bound as the program asked.
        if r.app_addr().is_some() {
            r.set(DEFERRED);
        }
        if let Err(e) = recreate(fd, r) {
            r.clear(DEFERRED);
            return Verdict::fail(e);
        }
        r.clear(OUR_PORT);
        flows::unmark(r.flow.swap(0, AcqRel));
    }
    if r.any(HAS_PORT) {
        return connect_fixed(fd, r, dst, addr, len);
    }
    if r.any(PROGRAM_DEFERRED) && !r.any(DEFERRED) {
        // The program's own deferral was carried out by the kernel (a send autobound it).
        return Verdict::Pass(Pass::AlreadyBound);
    }
    let bound = r
        .app_addr()
        .filter(|a| r.any(DEFERRED) && !a.is_unspecified());
    let src = match bound {
        Some(a) => a.with_port(0),
        None => match route::source_for(&dst) {
            Ok(s) => s,
            Err(e) => return no_route(fd, &dst, e),
        },
    };
    // Bind only the port when the program did not choose an address: the kernel then sets the
    // source at connect as for its own autobound sockets (and, like them, an IPv6 socket keeps
    // its IPv4 side free). SOCK_DIAG is still asked about the source the route gives.
    let bind_at = match bound {
        Some(a) => a.with_port(0),
        None if r.any(V6) => SockAddr::V6 {
            ip: [0; 16],
            port: 0,
            flowinfo: 0,
            scope: 0,
        },
        None => SockAddr::V4 {
            ip: [0; 4],
            port: 0,
        },
    };
    let Some(ns) = ports::namespace_range() else {
        return lock_unavailable(&WARNED_RANGE, "cannot read ip_local_port_range", libc::EIO);
    };
    let range = ports::narrow(ns, r.port_range.load(Acquire));
    if set_reuseport(fd, r, false).is_err() {
        return Verdict::Pass(Pass::InternalError);
    }
    let now = sys::now_ms();
    let slot = flows::find(&dst);
    let mut search = Search {
        // Ask before binding when a lost race could not be retried on a fresh socket, and for a
        // destination that just lost a race (its 4-tuples are filling up).
        ask_first: !swappable(r) || flows::busy(slot, now),
        slot,
        bind_at,
        use_marks: true,
        skipped: 0,
        swaps: 0,
        now,
    };
    for _pass in 0..2 {
        for port in ports::shuffled(range) {
            if ports::is_reserved(port) {
                continue;
            }
            if let Some(v) = try_port(fd, r, src.with_port(port), &dst, addr, len, &mut search) {
                return v;
            }
        }
        if search.skipped == 0 {
            break;
        }
        // Every free-looking port is taken: check the ones this process holds too (a mark may be
        // stale) before saying EAGAIN.
        search.use_marks = false;
        search.ask_first = true;
        search.skipped = 0;
    }
    // Every port is taken for this destination.
    restore_app_reuse(fd, r);
    Verdict::fail(libc::EAGAIN)
}

/// Where one connect's search over the ports stands.
struct Search {
    slot: Option<flows::Slot>,
    /// The address to bind with the candidate port (the program's, or the wildcard).
    bind_at: SockAddr,
    ask_first: bool,
    use_marks: bool,
    skipped: u32,
    swaps: u32,
    now: u64,
}

/// One candidate port: None to go on with the next, Some(result) when the search is over.
#[allow(clippy::too_many_arguments)]
fn try_port(
    fd: c_int,
    r: &Sock,
    local: SockAddr,
    dst: &SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
    search: &mut Search,
) -> Option<Verdict> {
    let port = local.port();
    if search.use_marks && flows::mine(search.slot, port) {
        search.skipped += 1;
        return None;
    }
    if search.ask_first {
        match netlink::udp_exact(&local, dst) {
            Ok(Some(f)) if f.state == TCP_ESTABLISHED => return None,
            Ok(_) => {}
            Err(e) => return Some(diag_failed(fd, r, e, None)),
        }
    }
    if set_reuseaddr(fd, r, true).is_err() {
        return Some(Verdict::Pass(Pass::InternalError));
    }
    match sys::bind(fd, &search.bind_at.with_port(port)) {
        Ok(()) => {}
        Err(libc::EADDRINUSE) => return None,
        Err(e) => {
            // Not a busy port (e.g. an address the socket cannot use): the kernel decides.
            restore_app_reuse(fd, r);
            crate::debug!("connect(fd {fd}): bind {local} for the UDP lock failed (errno {e})");
            return Some(Verdict::Pass(Pass::LockUnavailable));
        }
    }
    match check_and_connect(fd, r, &local, dst, addr, len) {
        Checked::Connected(v) => {
            r.set(OUR_PORT);
            if let Verdict::Done(ret, _) = v
                && ret < 0
            {
                autobind_like_kernel(fd, r);
                return Some(v);
            }
            track_flow(r, search.slot, port);
            crate::debug!(
                "connect(fd {fd}): UDP lock: {local} -> {dst} after {} lost races",
                search.swaps
            );
            return Some(v);
        }
        Checked::Lost => {}
        Checked::DiagFailed(e) => return Some(diag_failed(fd, r, e, Some(&local))),
    }
    // Another socket owns (local, dst). This socket is bound: swap in a fresh one.
    search.slot = flows::lost_race(dst, search.now).or(search.slot);
    if search.swaps == MAX_SWAPS || !swappable(r) {
        crate::debug!(
            "connect(fd {fd}): UDP lock gave up after {} lost races",
            search.swaps
        );
        bound_to(r, &local);
        r.set(OUR_PORT);
        return Some(Verdict::fail(libc::EAGAIN));
    }
    if let Err(e) = recreate(fd, r) {
        bound_to(r, &local);
        r.set(OUR_PORT);
        return Some(Verdict::fail(e));
    }
    search.swaps += 1;
    search.ask_first = true;
    crate::debug!(
        "connect(fd {fd}): lost the race for {local} -> {dst}; retrying on a fresh socket"
    );
    None
}

/// Remembers (for a busy destination) that this socket holds a flow from `port`.
fn track_flow(r: &Sock, slot: Option<flows::Slot>, port: u16) {
    flows::unmark(r.flow.swap(flows::mark(slot, port), AcqRel));
}

/// The kernel refused the destination of a connect through the lock (EACCES, ENETUNREACH…):
/// leave the socket as the kernel's own connect would have, autobound on the program's address
/// (or the wildcard), rather than on the source and port the lock chose.
fn autobind_like_kernel(fd: c_int, r: &Sock) {
    if !swappable(r) {
        return;
    }
    r.clear(DEFERRED | RELEASED);
    if recreate(fd, r).is_err() {
        return;
    }
    r.clear(OUR_PORT);
    let any = if r.any(V6) {
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
    };
    let a = r.app_addr().unwrap_or(any).with_port(0);
    if sys::bind(fd, &a).is_ok() {
        r.set_local(&sys::getsockname(fd).unwrap_or(a));
        r.set(HAS_PORT);
    }
}

/// The socket now owns `local` (whatever happens to its connect).
fn bound_to(r: &Sock, local: &SockAddr) {
    r.clear(DEFERRED | RELEASED);
    r.set_local(local);
    r.set(HAS_PORT);
}

enum Checked {
    Connected(Verdict),
    Lost,
    DiagFailed(c_int),
}

/// The socket is bound to `local`: lock, check that it alone would receive from `dst`, connect
/// with the program's own arguments, unlock.
fn check_and_connect(
    fd: c_int,
    r: &Sock,
    local: &SockAddr,
    dst: &SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Checked {
    if set_reuseaddr(fd, r, false).is_err() {
        return Checked::DiagFailed(libc::EIO);
    }
    let me = match cookie(fd, r) {
        Ok(c) => c,
        Err(e) => return Checked::DiagFailed(e),
    };
    match netlink::udp_exact(local, dst) {
        // Nobody would receive (e.g. a destination the kernel cannot route): no conflict; the
        // kernel answers the connect.
        Ok(Some(f)) if f.cookie == me => {}
        Ok(None) => {}
        Ok(Some(_)) => return Checked::Lost,
        Err(e) => return Checked::DiagFailed(e),
    }
    // SAFETY: the program's own arguments, unchanged.
    let ret = unsafe { real::connect(fd, addr, len) };
    let result = Verdict::done(ret);
    bound_to(r, local);
    if ret == 0 {
        r.set(CONNECTED);
    }
    // Unlock a connected socket (a failed reconnect keeps its old peer, as the kernel does).
    if r.any(CONNECTED) {
        let _ = set_reuseaddr(fd, r, true);
    }
    Checked::Connected(result)
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

/// connect on a socket that already has a port (bound to a fixed port, or connected before):
/// the same check on that port. A connected socket is not returned by the lookup for another
/// destination: then any other socket answering is a conflict, and nobody answering means none.
fn connect_fixed(
    fd: c_int,
    r: &Sock,
    dst: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    let Some(mut local) = r.local() else {
        return Verdict::Pass(Pass::InternalError);
    };
    if local.is_unspecified() {
        match route::source_for(&dst) {
            Ok(s) => local = s.with_port(local.port()),
            Err(e) => return no_route(fd, &dst, e),
        }
    }
    match connect_on(fd, r, &local, &dst, addr, len) {
        Checked::Connected(v) => v,
        // Another socket owns this 4-tuple: like TCP, it is not available.
        Checked::Lost => Verdict::fail(libc::EADDRNOTAVAIL),
        Checked::DiagFailed(e) => lock_unavailable(&WARNED_DIAG, "SOCK_DIAG", e),
    }
}

/// A connect on a socket whose port the lock chose, connected or not (after a connect that
/// failed, or a disconnect with data or an error still queued, see `disconnected`): the kernel
/// keeps an autobound port across connects (and what is queued stays readable); so do we when
/// the new 4-tuple is free. A connected socket keeps its source address too; an unconnected one
/// takes the program's or the route's, as the kernel's connect sets it. None: a fresh socket
/// and a search, which never creates a duplicate 4-tuple and handles SOCK_DIAG failures (here,
/// unchecked, the kernel might connect a 4-tuple another socket owns).
fn reconnect_own_port(
    fd: c_int,
    r: &Sock,
    dst: SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<Verdict> {
    let mut local = r.local()?;
    if !r.any(CONNECTED) {
        let src = match r.app_addr().filter(|a| !a.is_unspecified()) {
            Some(a) => a,
            None => match route::source_for(&dst) {
                Ok(s) => s,
                Err(e) => return Some(no_route(fd, &dst, e)),
            },
        };
        local = src.with_port(local.port());
    }
    match connect_on(fd, r, &local, &dst, addr, len) {
        Checked::Connected(v) => {
            r.clear(DEFERRED | RELEASED);
            Some(v)
        }
        Checked::Lost | Checked::DiagFailed(_) => None,
    }
}

/// The lock on the port the socket already has: check and connect.
fn connect_on(
    fd: c_int,
    r: &Sock,
    local: &SockAddr,
    dst: &SockAddr,
    addr: *const sockaddr,
    len: socklen_t,
) -> Checked {
    if set_reuseport(fd, r, false).is_err() {
        return Checked::DiagFailed(libc::EIO);
    }
    let checked = check_and_connect(fd, r, local, dst, addr, len);
    if let Checked::Connected(_) = checked {
        track_flow(r, flows::find(dst), local.port());
    }
    checked
}

/// A successful disconnect (connect AF_UNSPEC) of a socket whose port the lock chose: the kernel
/// releases a port the program did not choose, so put a fresh socket in its place, bound to the
/// program's address without a port (getsockname shows port 0, as the kernel's would).
pub fn disconnected(fd: c_int, r: &Sock) {
    r.clear(CONNECTED);
    flows::unmark(r.flow.swap(0, AcqRel));
    if r.any(DEFERRED) {
        // The kernel would have released the port it autobound at bind(ip, 0).
        r.set(RELEASED);
    }
    if !r.any(OUR_PORT) {
        // The program's own port: it stays bound, exclusive again as it was before connect.
        let _keep = KeepErrno::new();
        restore_app_reuse(fd, r);
        return;
    }
    if !swappable(r) {
        return;
    }
    if sys::has_pending(fd) {
        // The kernel keeps queued datagrams and a pending error (an ICMP refusal) across a
        // disconnect; a fresh socket would lose them. Keep this one and its port: the next
        // connect re-locks it like any socket that already has a port.
        crate::debug!("fd {fd}: disconnected with data or an error queued: the port stays bound");
        r.set(KEPT);
        // Unconnected: exclusive, as a bound socket of the program's would be (README limits:
        // it also receives datagrams sent to the port, which the kernel's would refuse).
        let _keep = KeepErrno::new();
        restore_app_reuse(fd, r);
        return;
    }
    if r.app_addr().is_some() {
        r.set(DEFERRED | RELEASED);
    }
    match recreate(fd, r) {
        Ok(()) => r.clear(OUR_PORT),
        Err(e) => {
            r.clear(DEFERRED | RELEASED);
            crate::debug!(
                "fd {fd}: could not release the lock's port after disconnect (errno {e})"
            );
        }
    }
}

/// A bind on a socket that kept the lock's port after a disconnect (data or an error was queued,
/// see `disconnected`): the kernel's socket has no port by now and may bind, so put a fresh one
/// in its place first (what was still queued is lost; README "Limits").
pub fn release_kept_port(fd: c_int, r: &Sock) -> Result<(), c_int> {
    if !swappable(r) {
        return Err(libc::EINVAL);
    }
    r.clear(DEFERRED | RELEASED);
    recreate(fd, r)?;
    r.clear(OUR_PORT | KEPT);
    Ok(())
}

/// SOCK_DIAG did not answer: do not guess. If this socket already took a port, put a fresh one
/// in its place so the kernel's own connect (autobind) happens as without us.
fn diag_failed(fd: c_int, r: &Sock, e: c_int, bound: Option<&SockAddr>) -> Verdict {
    if diag_unavailable_for_good(e) {
        DIAG_BROKEN.store(true, Relaxed);
    }
    match bound {
        Some(local) if !swappable(r) || recreate(fd, r).is_err() => bound_to(r, local),
        Some(_) => {}
        None => restore_app_reuse(fd, r),
    }
    lock_unavailable(&WARNED_DIAG, "SOCK_DIAG", e)
}

/// Replaces the socket behind `fd` by a new one with every option the program set and its file
/// status flags (O_NONBLOCK, also from ioctl FIONBIO) and close-on-exec flag, via dup3.
/// A deferred bind is carried over. Errors (EMFILE…) are returned; no fd is leaked.
fn recreate(fd: c_int, r: &Sock) -> Result<(), c_int> {
    crate::debug!("fd {fd}: swapping in a fresh socket");
    let _keep = KeepErrno::new();
    // SAFETY: fcntl F_GETFD/F_GETFL on the program's fd, through the real function.
    let (fd_flags, fl_flags) = unsafe {
        (
            real::fcntl(fd, libc::F_GETFD, 0),
            real::fcntl(fd, libc::F_GETFL, 0),
        )
    };
    if fd_flags < 0 || fl_flags < 0 {
        return Err(errno());
    }
    let domain = if r.any(V6) {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket(2) through the real function.
    let new = unsafe { real::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if new < 0 {
        return Err(errno());
    }
    let deferred = r.app_addr().filter(|_| r.any(DEFERRED));
    let result = (|| {
        r.each_opt(|level, name, v| {
            // SAFETY: v is a recorded option value of v.len() bytes.
            let ret = unsafe {
                real::setsockopt(new, level, name, v.as_ptr().cast(), v.len() as socklen_t)
            };
            if ret < 0 {
                crate::debug!(
                    "fd {fd}: replaying option {level}/{name} failed (errno {})",
                    errno()
                );
            }
        });
        if r.any(APP_REUSEADDR) {
            sys::set_int(new, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        }
        if r.any(APP_NOPORT) || deferred.is_some() {
            sys::set_int(new, libc::IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)?;
        }
        if let Some(a) = deferred {
            sys::bind(new, &a)?;
        }
        // SAFETY: F_SETFL with the flags read from the program's fd.
        if unsafe { real::fcntl(new, libc::F_SETFL, fl_flags as usize) } < 0 {
            return Err(errno());
        }
        let cloexec = if fd_flags & libc::FD_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        // SAFETY: dup3 of our new socket over the program's fd (atomically closes the old one).
        if unsafe { real::dup3(new, fd, cloexec) } < 0 {
            return Err(errno());
        }
        if r.is_shared() {
            // The program's dups of this socket must name the new one too.
            crate::state::each_dup_of(fd, |other| {
                // SAFETY: fcntl and dup3 on the program's own fds, through the real functions.
                unsafe {
                    let flags = real::fcntl(other, libc::F_GETFD, 0);
                    let cloexec = if flags > 0 && flags & libc::FD_CLOEXEC != 0 {
                        libc::O_CLOEXEC
                    } else {
                        0
                    };
                    real::dup3(new, other, cloexec);
                }
            });
        }
        Ok(())
    })();
    sys::close(new);
    result?;
    r.clear(K_REUSEADDR | K_REUSEPORT | K_NOPORT | HAS_PORT | CONNECTED);
    r.put(K_REUSEADDR, r.any(APP_REUSEADDR));
    r.put(K_NOPORT, r.any(APP_NOPORT) || deferred.is_some());
    r.cookie.store(0, Release);
    Ok(())
}
