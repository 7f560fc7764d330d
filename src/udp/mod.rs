//! UDP, kernel first (SPEC "UDP: the REUSEADDR lock"; lab/connectx_udp.py).
//!
//! A UDP connect is the kernel's own connect: its port choice, reserved ports, the socket's
//! IP_LOCAL_PORT_RANGE, routing, device and namespace, all exact, and the socket is then simply
//! the kernel's. Only when the kernel answers EAGAIN (no free port for that source) does the lock
//! (`lock`) run, on the same socket, which is still unbound then. `exhausted` remembers such an
//! answer for a second so that a full range costs the kernel's scan once, not on every connect.
//!
//! The lock shares ports across destinations with SO_REUSEPORT, whose sharing the kernel limits
//! to sockets of one uid: another user cannot bind a connectx flow's port and take its replies
//! (KERNEL.md; tests/udp.rs `another_user_cannot_take_a_shared_port`). Sockets whose port
//! connectx shares (the lock's, and fixed ports the program bound) are checked on every connect,
//! one connect of a socket at a time (`Busy`).
//!
//! Files: `lock` (the lock: the port search), `shared` (connects on a port connectx already
//! shares: reconnects, fixed ports), `flow` (what both ask the kernel: peer, source, interface,
//! the SOCK_DIAG check), `hints` (ports this process holds to busy
//! destinations), `source` (the route's source and interface, cached), `exhausted` (the memory of
//! a full range).

mod consent;
pub mod exhausted;
mod flow;
pub mod hints;
pub mod inherited;
mod lock;
mod shared;
pub mod source;

use crate::addr::{ProgramAddr, ProgramCopy, SockAddr};
use crate::decision::{Pass, Verdict};
use crate::netlink;
use crate::sockopt::{restore_app_reuse, set_noport, set_reuseport};
use crate::state::*;
use crate::sys::{KeepErrno, errno};
use crate::{log, real};
use libc::{c_int, sockaddr, socklen_t};
use std::sync::atomic::{AtomicBool, Ordering::*};

/// A fixed port held by others may be shared only with connected sockets that consented
/// (`consent`: connectx flows of this user): an unconnected holder is a server, or a socket
/// between bind and connect; a connected one without the mark is a program's own.
pub fn may_share(h: &netlink::Holders) -> bool {
    h.flows > 0 && h.unconnected == 0 && h.foreign == 0
}

static DIAG_BROKEN: AtomicBool = AtomicBool::new(false);
static WARNED_DIAG: AtomicBool = AtomicBool::new(false);

/// False when SOCK_DIAG cannot be used by this process (asked once, when the lock is first
/// needed, by opening the pooled netlink socket): the lock then never runs (the kernel's EAGAIN
/// stands) and one warning is logged.
pub fn lock_available() -> bool {
    if DIAG_BROKEN.load(Relaxed) || !crate::features::udp_lock() {
        return false;
    }
    match netlink::check_diag() {
        Err(e) if diag_unavailable_for_good(e) => {
            DIAG_BROKEN.store(true, Relaxed);
            crate::stats::count(crate::stats::Event::UdpNoDiag);
            lock_unavailable(&WARNED_DIAG, "SOCK_DIAG", e);
            false
        }
        _ => true,
    }
}

/// Whether the lock is already known not to run here, asking nothing.
pub fn lock_known_unavailable() -> bool {
    DIAG_BROKEN.load(Relaxed) || crate::features::udp_lock_known_missing()
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
            "UDP lock unavailable ({what}, errno {e}): ports are not shared, the kernel's own answer stands"
        ),
    );
    Verdict::Pass(Pass::LockUnavailable)
}

/// In a fork child: no connect of the parent's other threads is under way here, and what they
/// left half written is void (`source` is reset by the caller, lib.rs).
pub fn after_fork_in_child() {
    lock::after_fork_in_child();
    consent::after_fork_in_child();
}

/// A fixed port the program bound (bind(ip, P)).
fn fixed_port(r: &Sock) -> bool {
    r.has_port() && r.app_addr().is_some_and(|a| a.port() != 0)
}

/// The destination, when the lock needs it: copied safely (a bad buffer is the kernel's EFAULT
/// to give), and used from then on, so that the kernel connects to the very address the lock
/// checked.
enum Destination {
    Inet(SockAddr, ProgramCopy),
    Disconnect,
    /// Not an address the lock could use (other families, bad lengths): the kernel answers.
    Other,
}

/// # Safety
/// The program's arguments to connect(2).
unsafe fn destination(r: &Sock, addr: *const sockaddr, len: socklen_t) -> Destination {
    // SAFETY: the program's own arguments.
    let copy = unsafe { SockAddr::read_program(addr, len) };
    let mut dst = match copy.addr {
        ProgramAddr::Inet(a) => a,
        ProgramAddr::Unspec => return Destination::Disconnect,
        ProgramAddr::Other | ProgramAddr::NotRead => return Destination::Other,
    };
    if let (true, SockAddr::V4 { ip, port }) = (r.any(V6), dst) {
        // An IPv6 UDP socket takes an AF_INET destination as ::ffff:a.b.c.d (the kernel's
        // ip6_datagram_connect does the same); the real connect gets the program's address.
        dst = SockAddr::mapped(ip, port);
    }
    if dst.is_v6() != r.any(V6) {
        return Destination::Other;
    }
    Destination::Inet(dst, copy)
}

/// # Safety
/// The program's arguments to connect(2).
pub unsafe fn connect(fd: c_int, r: &Sock, addr: *const sockaddr, len: socklen_t) -> Verdict {
    // One connect of a socket at a time: a second thread's kernel connect must not land on a
    // port the first one's lock is sharing.
    if lock_known_unavailable() && !matches!(r.phase(), Phase::Ours | Phase::Shared) {
        // This process cannot run the lock (no SOCK_DIAG, a kernel without what it needs): the
        // kernel's own connect, counted as a fallback.
        return Verdict::Pass(Pass::LockUnavailable);
    }
    let Some(_busy) = Busy::take(r) else {
        return Verdict::fail(libc::EAGAIN);
    };
    if r.any(RESYNC) {
        // A fork child's socket that the parent's thread was connecting (issue 16).
        let _keep = KeepErrno::new();
        crate::sockopt::resync(fd, r);
    }
    if r.is(Phase::Pending) {
        // A fixed port held by connectx flows, held back at bind: bound now only if its 4-tuple
        // to this destination is free.
        if !lock_available() {
            return Verdict::fail(libc::EADDRNOTAVAIL);
        }
        // SAFETY: forwarded from our caller.
        return match unsafe { destination(r, addr, len) } {
            // SAFETY: our copy of the program's address.
            Destination::Inet(dst, copy) => unsafe {
                shared::connect_pending(fd, r, dst, copy.ptr(), copy.len())
            },
            // A disconnect or another family on a socket without its port yet: as the kernel
            // answers an unbound socket.
            _ => Verdict::Pass(Pass::KernelAnswers),
        };
    }
    if !(r.is(Phase::Ours)
        || fixed_port(r) && (!r.any(APP_REUSEADDR | APP_REUSEPORT) || r.is(Phase::Shared)))
    {
        // SAFETY: forwarded from our caller.
        return unsafe { kernel_first(fd, r, addr, len) };
    }
    // A port connectx shares: every connect is checked (no signal handler runs meanwhile: a
    // jump out of one would leave a sentinel holding the port's lock).
    let _signals = crate::sys::SignalsHeld::new();
    if !lock_available() {
        // Nothing can be checked (SOCK_DIAG went away): never connect unchecked on a shared
        // port. A port the kernel or the lock chose goes back, and the kernel's own connect
        // gives the socket one of its own; a fixed port cannot be given back: EAGAIN.
        if !r.is(Phase::Ours) {
            return Verdict::fail(libc::EAGAIN);
        }
        flow::release(fd);
        hints::unmark(r.flow.swap(0, AcqRel));
        r.enter(Phase::Free);
        r.clear(CONNECTED);
        restore_app_reuse(fd, r);
        // SAFETY: forwarded from our caller.
        return unsafe { kernel_first(fd, r, addr, len) };
    }
    // SAFETY: forwarded from our caller.
    match unsafe { destination(r, addr, len) } {
        // SAFETY: our copy of the program's address.
        Destination::Inet(dst, copy) => unsafe {
            if r.is(Phase::Ours) {
                shared::reconnect(fd, r, dst, copy.ptr(), copy.len())
            } else {
                shared::connect_fixed(fd, r, dst, copy.ptr(), copy.len())
            }
        },
        // SAFETY: the program's own arguments.
        Destination::Disconnect => unsafe { disconnect(fd, r, addr, len) },
        Destination::Other => Verdict::Pass(Pass::KernelAnswers),
    }
}

/// The kernel's own connect; the lock only where it answers EAGAIN. The kernel reads the
/// address itself: nothing is copied unless the lock runs.
///
/// # Safety
/// As `connect`.
pub(super) unsafe fn kernel_first(
    fd: c_int,
    r: &Sock,
    addr: *const sockaddr,
    len: socklen_t,
) -> Verdict {
    // A socket with a port of its own needs none from the kernel: its connect is never skipped.
    // Nor where the lock found nothing to share a moment ago: the kernel's connect then finds a
    // port released since, and its EAGAIN stands without the lock.
    let nothing_shareable = !r.has_port() && exhausted::nothing_shareable(fd, r);
    if r.has_port() || nothing_shareable || !exhausted::recent(fd, r) {
        // The kernel's autobind must not see SO_REUSEPORT (the program's, put in before a bind):
        // with it the kernel hands out ports it shares with the lock's flows, to the same
        // destination too (KERNEL.md). A socket with a port of its own keeps the program's.
        if !r.has_port() && r.any(K_REUSEPORT) && set_reuseport(fd, r, false).is_err() {
            return Verdict::Pass(Pass::InternalError);
        }
        // Until its unlock the kernel's port is this socket's alone: another thread's lock
        // that meets it then must look again (`lock::Opening`).
        let _opening = lock::Opening::new();
        // connectx's mark before the connect (it does not change the kernel's autobind): a view
        // dumped between this connect and its unlock sees a connectx flow, not a socket that
        // refuses its port for a second (`consent`). Taken off again if the connect fails.
        let marks = !fixed_port(r) && !lock_known_unavailable();
        if marks {
            consent::mark(fd, r);
        }
        let started = crate::sys::now_ns();
        // SAFETY: the program's own arguments.
        let ret = unsafe { real::connect(fd, addr, len) };
        let e = errno();
        let took = crate::sys::now_ns().saturating_sub(started);
        if ret != 0 && marks {
            let _keep = KeepErrno::new();
            let _ = set_noport(fd, r, r.any(APP_NOPORT));
        }
        if ret == 0 {
            // The kernel read the address: its family tells a disconnect.
            // SAFETY: the kernel has just read `len` bytes at `addr`.
            if unsafe { SockAddr::family_of(addr, len) } == Some(libc::AF_UNSPEC) {
                disconnected(fd, r);
            } else {
                kernel_connected(fd, r);
            }
            return Verdict::done(0);
        }
        if e != libc::EAGAIN {
            return Verdict::answer(ret as isize, e);
        }
        // No free port for this source: the socket is still unbound (KERNEL.md).
        exhausted::note(fd, r, took);
        if nothing_shareable {
            crate::debug!("connect(fd {fd}): no free port, and none to share a moment ago");
            return Verdict::answer(ret as isize, e);
        }
    }
    // SAFETY: forwarded from our caller.
    let (dst, copy) = match unsafe { destination(r, addr, len) } {
        Destination::Inet(dst, copy) => (dst, copy),
        // SAFETY: the program's own arguments.
        Destination::Disconnect => return unsafe { disconnect(fd, r, addr, len) },
        Destination::Other => return Verdict::Pass(Pass::KernelAnswers),
    };
    crate::debug!("connect(fd {fd}): the kernel has no free port for {dst}: UDP lock");
    // No signal handler runs during the lock (a jump out of one would leave a netlink lease or
    // a port locked by this socket behind).
    let _signals = crate::sys::SignalsHeld::new();
    if !lock_available() {
        // The kernel's own answer (EAGAIN) stands; the hook makes its call again, noted once.
        return Verdict::Pass(Pass::LockUnavailable);
    }
    // SAFETY: our copy of the program's address.
    unsafe { lock::search(fd, r, dst, copy.ptr(), copy.len()) }
}

/// The kernel connected the socket with a port of its own choosing: from now on it is the
/// kernel's socket, its port as the kernel chose it. The program's own SO_REUSEPORT stays held
/// back (getsockopt answers it): our SO_REUSEPORT is the lock's switch on this port now.
fn kernel_connected(fd: c_int, r: &Sock) {
    let _keep = KeepErrno::new();
    if !r.has_port() {
        r.enter(Phase::Bound);
    }
    r.set(CONNECTED);
    if fixed_port(r) {
        // The program's own port, which it shares itself (SO_REUSEADDR or SO_REUSEPORT, or
        // this would be connect_fixed): nothing of ours to add.
        return;
    }
    // A port the kernel chose, also one the program opened to its own reuseport group (GROUP:
    // dig binds (ip, 0) with SO_REUSEPORT, then connects): the flow is marked like any other,
    // and the lock shares the port only while every socket on it consents, so never while a
    // worker of that group sits on it unconnected (`consent`).
    // The unlock: the port is open to other flows of this user (one system call), so that the
    // lock can share it once the range is full. From now on the socket's connects are checked.
    // Not where the lock is known not to run (no SOCK_DIAG, a kernel without what it needs):
    // then nothing could check them. Known only: the kernel's connect pays for no probe (a
    // process whose lock cannot run never shares the port; others that can check before they do).
    if !lock_known_unavailable() && set_reuseport(fd, r, true).is_ok() {
        consent::mark(fd, r);
        r.enter(Phase::Ours);
        crate::debug!("connect(fd {fd}): the kernel's own; its port is open to other flows");
    }
}

/// A successful disconnect (connect AF_UNSPEC).
pub fn disconnected(fd: c_int, r: &Sock) {
    let _keep = KeepErrno::new();
    r.clear(CONNECTED);
    hints::unmark(r.flow.swap(0, AcqRel));
    if fixed_port(r) {
        // The program's own port stays bound; exclusive again as before its connect (others
        // may hold it meanwhile: its next connect is checked).
        restore_app_reuse(fd, r);
        return;
    }
    // The lock bound port 0 in a one-port range and the kernel autobinds its own: neither holds
    // SOCK_BINDPORT_LOCK, so the kernel released the port (keeping a bound address).
    match r.phase() {
        // The port the kernel's bind(ip, 0) would have taken is released too: getsockname
        // shows port 0 and does not bind one.
        Phase::Deferred => r.enter(Phase::Released),
        // The program's own deferral stays the program's (nothing of ours binds it).
        Phase::ProgramDeferred | Phase::Released => {}
        _ => r.enter(Phase::Free),
    }
    restore_app_reuse(fd, r);
    let _ = set_noport(fd, r, r.any(APP_NOPORT));
}

/// connect(AF_UNSPEC) on a socket whose connects we serialise (`Busy` is held).
///
/// # Safety
/// The program's arguments to connect(2).
unsafe fn disconnect(fd: c_int, r: &Sock, addr: *const sockaddr, len: socklen_t) -> Verdict {
    // SAFETY: the program's own arguments, unchanged.
    let ret = unsafe { real::connect(fd, addr, len) };
    let result = Verdict::answer(ret as isize, errno());
    if ret == 0 {
        disconnected(fd, r);
    }
    result
}

/// One connect at a time on a socket: two threads connecting the same socket at once must not
/// both pass the check, nor one make the kernel's connect while the other shares the port.
/// Never a blocking lock. The token says who holds it and since when (`token`):
/// - this thread's running policy phase (a signal handler's connect of the socket that the
///   phase it interrupted is connecting): EAGAIN at once, never a wait for ourselves;
/// - a phase of this thread that is gone (jumped out of): taken over at once;
/// - another thread: waited for, up to STALE_MS (a holder that jumped out and never came back,
///   or a thread of the parent seen in a child made without fork handlers: taken over then).
///
/// A fork child clears every token at once (`crate::after_fork_in_child`).
pub struct Busy<'a>(&'a Sock);

impl<'a> Busy<'a> {
    const STALE_MS: u64 = 2000;
    const MS_BITS: u32 = 23;

    /// ordinal (20 bits) | generation (20 bits) | start ms (23 bits, wrapping) | 1.
    fn token(ordinal: u32, generation: u32, ms: u64) -> u64 {
        (ordinal as u64 & 0xf_ffff) << 44
            | (generation as u64 & 0xf_ffff) << 24
            | (ms & ((1 << Self::MS_BITS) - 1)) << 1
            | 1
    }

    fn held_for(held: u64, now: u64) -> u64 {
        now.wrapping_sub(held >> 1) & ((1 << Self::MS_BITS) - 1)
    }

    pub fn take(r: &'a Sock) -> Option<Self> {
        let start = crate::sys::now_ms();
        let (ordinal, generation) = crate::decision::current_phase().unwrap_or((0, 0));
        let me = Self::token(ordinal, generation, start);
        let mine = |held: u64| ordinal != 0 && held >> 44 == (ordinal as u64 & 0xf_ffff);
        let mut adopted = false;
        loop {
            match r.busy.compare_exchange(0, me, AcqRel, Acquire) {
                Ok(_) => return Some(Busy(r)),
                Err(held)
                    if mine(held) && (held >> 24) & 0xf_ffff == generation as u64 & 0xf_ffff =>
                {
                    // Our own running phase holds it: a signal handler's connect.
                    return None;
                }
                Err(held) if mine(held) || Self::held_for(held, start) > Self::STALE_MS => {
                    if r.busy.compare_exchange(held, me, AcqRel, Acquire).is_ok() {
                        return Some(Busy(r));
                    }
                }
                Err(_) if !adopted => {
                    // A child made without fork handlers (_Fork, raw clone) finds its parent's
                    // tokens: cleared once it knows (one getpid, on this rare path only).
                    adopted = true;
                    crate::adopt_if_forked();
                }
                Err(_) if crate::sys::now_ms().saturating_sub(start) > Self::STALE_MS => {
                    return None;
                }
                // SAFETY: no arguments.
                Err(_) => unsafe {
                    libc::sched_yield();
                },
            }
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(0, Release);
    }
}
