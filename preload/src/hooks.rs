//! The exported C symbols. Each is a few lines: the policy, or the real call with the original
//! arguments. Every hook has one shape ("decide, release, then call"; SHAPES.md §A, PITFALLS
//! 16-17), in `run`:
//! 1. the program's pending cancellation is acted on first (`pthread_testcancel`), for a call
//!    that is a cancellation point, before connectx has touched anything;
//! 2. connectx's own work (`own_work`, `guarded`): cancellation disabled (none of our libc
//!    calls, many of them cancellation points, can begin a forced unwind), the frame marked
//!    (`IN_CALL.frame`), both undone by glibc's cleanup chain if a siglongjmp leaves the frame,
//!    panics caught. Nothing else: no lock, no busy flag held past it. Where the policy holds
//!    what a jump must not leave (a netlink lease, a sentinel, a port locked for a moment),
//!    asynchronous signals are held off too (`sys::SignalsHeld`, the lock's paths only);
//! 3. the program's real call, last: outside any catch, cancellation as the program set it, no
//!    Rust value with a destructor alive, connectx's state consistent. A cancellation or a
//!    jump there skips only the bookkeeping after it, which each policy says how the next call
//!    re-derives (`decision::Then`);
//! 4. bookkeeping on a normal return (again as own work), which may ask for the call once more.
//!
//! A UDP connect's real call is made inside the policy (the lock must check, connect and unlock
//! as one step): it never blocks, its pending cancellation was acted on in step 1, and a
//! cancellation arriving during it is acted on at the thread's next cancellation point.
//!
//! What a jump out of a policy phase (a signal handler's siglongjmp; a cancellation cannot begin
//! there) leaves, and what the next call does with it:
//! - the frame mark and the disabled cancellation: undone by our routine in glibc's cleanup
//!   chain before the jump lands; for a jump glibc does not see, the thread's next hook finds the
//!   mark below its own frame, knows it stale, and puts the program's cancellation state back;
//! - a socket's busy token: this thread's next connect of it takes it over (another generation);
//!   another thread's waits up to 2 s, then takes it over (`udp::Busy`);
//! - the UDP lock's "opening" count: searches wait for it only while connects keep beginning;
//! - a UDP socket the kernel connected before its unlock: its port is still its own (never
//!   opened), so no other flow can be on it; the record does not say connected, so the next
//!   connect is the kernel's own again (it keeps the port) and unlocks it then;
//! - a TCP connect whose bookkeeping was skipped: `decision::Then` says, per case.
//!
//! Re-entry: the library never calls its own hooks (its socket calls go through `real`), so a
//! hook entered while a policy phase of the same thread runs is a signal handler's call: it
//! gets the policy too (a per-socket busy token held by the interrupted phase answers EAGAIN:
//! `udp::Busy`). Only calls made while the library initialises pass straight through.
//!
//! Residual: a signal handler that calls pthread_exit (not async-signal-safe) during connectx's
//! own work outside the signal-held parts (microseconds, never the blocking call) sends a forced
//! unwind into the `catch_unwind`, which aborts; only `panic = "abort"` without any catch would
//! avoid it, at the price of a crash on any internal error.
//!
//! ABI: the hooks stay `extern "C"`, the real-function pointers too (the libc crate's types).
//! A Rust panic must never unwind into the program's C frames (`"C-unwind"` would let one
//! through; `"C"` aborts at the boundary as a last resort, and every panic is caught before).
//! glibc's forced unwind (cancellation, pthread_exit) passes `"C"` frames: rustc's personality
//! lets a forced unwind through their abort-on-unwind pads (lab/unwind, rustc 1.81/1.95/nightly,
//! both opt levels, the "tail" rows); with nothing live across the real call there is nothing
//! that the unwind should have run (tests/control_flow.rs runs these cases).
//!
//! errno: the program sees the real call's errno, or on success the errno it had before.

use crate::decision::{Entry, IN_CALL, Pass, Then, Verdict, policy_frame};
use crate::sys::{errno, set_errno};
use crate::{log, netlink, policy, real, state};
use libc::{
    c_int, c_uint, c_void, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t, timespec,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

unsafe extern "C-unwind" {
    /// Declared "C-unwind": it begins the forced unwind of a pending cancellation.
    fn pthread_testcancel();
}
unsafe extern "C" {
    fn pthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int;
    /// glibc's own cleanup chain (GLIBC_2.2.5, also 2.34): a siglongjmp over the frame runs the
    /// routine before it jumps (`__pthread_cleanup_upto`), as does a forced unwind.
    fn _pthread_cleanup_push(
        buf: *mut CleanupBuffer,
        routine: extern "C" fn(*mut c_void),
        arg: *mut c_void,
    );
    fn _pthread_cleanup_pop(buf: *mut CleanupBuffer, execute: c_int);
}
const PTHREAD_CANCEL_DISABLE: c_int = 1;

/// struct _pthread_cleanup_buffer (glibc's pthread.h).
#[repr(C)]
struct CleanupBuffer {
    routine: usize,
    arg: usize,
    canceltype: c_int,
    prev: usize,
}

/// What a jump over a policy phase must put back (`left_by_a_jump`).
struct PhaseStart {
    outer: bool,
    old_cancel: c_int,
}

/// Run by glibc when a siglongjmp (or a forced unwind) leaves connectx's own work: the mark
/// goes and the program's cancellation state comes back, before the jump lands.
extern "C" fn left_by_a_jump(arg: *mut c_void) {
    // SAFETY: arg is the PhaseStart in the frame being left, still intact (glibc runs the
    // routine before the jump restores the stack pointer).
    let start = unsafe { &*(arg as *const PhaseStart) };
    if start.outer {
        let _ = IN_CALL.try_with(|c| c.frame.set(0));
    }
    if start.old_cancel >= 0 {
        // SAFETY: not a cancellation point.
        unsafe { pthread_setcancelstate(start.old_cancel, std::ptr::null_mut()) };
    }
}

/// Runs `f` as connectx's own work: cancellation disabled, and with `mark` the frame marked
/// (when it is the thread's outer phase); both undone on return, and by glibc's
/// cleanup chain if a jump leaves the frame (registered first, so that no moment is left out:
/// glibc writes the old state before it changes it).
#[inline(never)]
fn guarded<R>(mark: bool, f: impl FnOnce() -> R) -> R {
    let mut start = PhaseStart {
        outer: false,
        old_cancel: -1,
    };
    let mut cleanup = CleanupBuffer {
        routine: 0,
        arg: 0,
        canceltype: 0,
        prev: 0,
    };
    let start_ptr = &mut start as *mut PhaseStart;
    // SAFETY: cleanup and start live in this frame until the pop below (or until glibc runs
    // left_by_a_jump when a jump leaves the frame); no cancellation point, no system call.
    unsafe {
        _pthread_cleanup_push(&mut cleanup, left_by_a_jump, start_ptr.cast());
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &raw mut (*start_ptr).old_cancel);
    }
    let here = start_ptr as usize;
    if mark {
        let _ = IN_CALL.try_with(|c| {
            if policy_frame(here) == Entry::Outer {
                // SAFETY: our own local, through the pointer glibc holds too.
                unsafe {
                    if c.frame.get() != 0 {
                        // A phase of this thread was left by a jump glibc did not see (not its
                        // siglongjmp): it left cancellation disabled; the state before it was
                        // the program's.
                        (*start_ptr).old_cancel = c.cancel.get();
                    }
                    (*start_ptr).outer = true;
                    c.cancel.set((*start_ptr).old_cancel);
                }
                c.generation.set(c.generation.get().wrapping_add(1));
                c.frame.set(here);
            }
        });
    }
    let r = f();
    // SAFETY: as above; the routine would do the same (both idempotent) if a jump came now.
    unsafe {
        if (*start_ptr).outer {
            let _ = IN_CALL.try_with(|c| c.frame.set(0));
        }
        pthread_setcancelstate((*start_ptr).old_cancel, std::ptr::null_mut());
        _pthread_cleanup_pop(&mut cleanup, 0);
    }
    r
}

/// Whether the hooked call is a cancellation point in glibc (POSIX: connect, send*, recv*).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cancel {
    Point,
    No,
}

/// The hook's shape (module doc): `policy` decides; on `Pass` (logged at debug unless `quiet`)
/// or a panic the real call with the original arguments; on `Call` the real call, then `then`.
#[inline]
fn run(
    call: &str,
    fd: c_int,
    quiet: bool,
    cancel: Cancel,
    mut real: impl FnMut() -> isize,
    policy: impl FnOnce() -> Verdict,
    mut then: impl FnMut(Then, isize, c_int) -> Verdict,
) -> isize {
    if crate::stands_down() || !crate::ensure_init() {
        return real();
    }
    if cancel == Cancel::Point {
        // SAFETY: no arguments. A pending cancellation unwinds from here, through this plain
        // frame (nothing of ours alive), exactly where the program's own call would have.
        unsafe { pthread_testcancel() };
    }
    let saved = errno();
    let mut verdict = own_work(call, fd, quiet, policy);
    let mut calls = 0;
    loop {
        match verdict {
            Verdict::Done(ret, e) => {
                set_errno(if ret < 0 { e } else { saved });
                return ret;
            }
            Verdict::Pass(_) => {
                set_errno(saved);
                return real();
            }
            Verdict::Call(t) => {
                set_errno(saved);
                // The program's call, nothing of ours alive or marked around it.
                let ret = real();
                let e = errno();
                calls += 1;
                // `then` asks for the call again at most once (tcp: a port a bind reserved);
                // a third call is never made.
                verdict = match own_work(call, fd, quiet, || then(t, ret, e)) {
                    Verdict::Call(_) | Verdict::Pass(_) if calls >= 2 => Verdict::Done(ret, e),
                    v => v,
                };
            }
        }
    }
}

/// connectx's own work on this thread: `f` with cancellation disabled, the frame marked and
/// panics caught. Returns `Pass` after a panic if the program's call was not made yet.
fn own_work(call: &str, fd: c_int, quiet: bool, f: impl FnOnce() -> Verdict) -> Verdict {
    let (verdict, answer) = guarded(true, || {
        let before = IN_CALL.try_with(|c| c.answer.replace(None)).ok();
        let verdict = catch_unwind(AssertUnwindSafe(f));
        // The phase's answer; a nested phase (a signal handler's) puts back the one before.
        let answer = IN_CALL
            .try_with(|c| match before {
                Some(b) => c.answer.replace(b),
                None => c.answer.take(),
            })
            .ok()
            .flatten();
        let verdict = match verdict {
            Ok(Verdict::Pass(why)) => {
                if !quiet || why != Pass::NothingToDo && why != Pass::NotOurs {
                    crate::debug!("{call}(fd {fd}): passed through: {why}");
                }
                if let Some(e) = why.fallback() {
                    crate::stats::count_and_note(
                        e,
                        format_args!(
                            "{call}(fd {fd}): first fallback to the kernel's behaviour: {why} \
                             (logged once; `connectx stats` counts them)"
                        ),
                    );
                }
                Ok(Verdict::Pass(why))
            }
            other => other,
        };
        (verdict, answer)
    });
    match verdict {
        Ok(v) => v,
        // A panic: the real call, unless the policy had already made it.
        Err(_) => {
            guarded(false, || {
                crate::stats::count_and_note(
                    crate::stats::Event::Panic,
                    format_args!("{call}(fd {fd}): internal error caught; the kernel's call made"),
                )
            });
            match answer {
                Some((ret, e)) => Verdict::Done(ret, e),
                None => Verdict::Pass(Pass::InternalError),
            }
        }
    }
}

/// A hook with no call after its policy's own.
fn no_then(_: Then, ret: isize, e: c_int) -> Verdict {
    Verdict::Done(ret, e)
}

/// Bookkeeping after (or before) a real call: errno kept, panics caught, cancellation held off
/// (it only touches our own tables, but a log line is a write). No call that could come back
/// into a hook, so it needs no mark.
#[inline]
fn after(f: impl FnOnce()) {
    if crate::stands_down() || !crate::ensure_init() {
        return;
    }
    let saved = errno();
    guarded(false, || {
        let _ = catch_unwind(AssertUnwindSafe(f));
    });
    set_errno(saved);
}

/// The program is closing (or replacing) `fd`: whatever we knew about that number goes.
fn forget(fd: c_int) {
    state::forget(fd);
    netlink::forget_fd(fd);
    log::forget_fd(fd);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // SAFETY: forwarded arguments.
    let fd = unsafe { real::socket(domain, ty, protocol) };
    if fd >= 0 {
        after(|| policy::socket_created(fd, domain, ty, protocol));
    }
    fd
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    ty: c_int,
    protocol: c_int,
    sv: *mut c_int,
) -> c_int {
    // SAFETY: forwarded arguments.
    let r = unsafe { real::socketpair(domain, ty, protocol, sv) };
    if r == 0 {
        // SAFETY: on success the kernel wrote two fds to sv.
        let (a, b) = unsafe { (*sv, *sv.add(1)) };
        after(|| {
            forget(a);
            forget(b);
        });
    }
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded arguments (the policy reads addr only after the kernel did).
    run(
        "bind",
        fd,
        false,
        Cancel::No,
        || unsafe { real::bind(fd, addr, len) } as isize,
        || unsafe { policy::bind(fd, addr, len) },
        no_then,
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded arguments (the policy reads addr safely, or after the kernel did).
    run(
        "connect",
        fd,
        false,
        Cancel::Point,
        || unsafe { real::connect(fd, addr, len) } as isize,
        || unsafe { policy::connect(fd, addr, len) },
        |t, ret, e| unsafe { policy::after_connect(fd, t, ret, e, addr, len) },
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: forwarded arguments.
    run(
        "listen",
        fd,
        false,
        Cancel::No,
        || unsafe { real::listen(fd, backlog) } as isize,
        || policy::listen(fd),
        no_then,
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: forwarded arguments; the policy reads val only after the kernel accepted it.
    run(
        "setsockopt",
        fd,
        true,
        Cancel::No,
        || unsafe { real::setsockopt(fd, level, name, val, len) } as isize,
        || unsafe { policy::setsockopt(fd, level, name, val, len) },
        no_then,
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: forwarded arguments; the policy writes val only where the kernel just wrote.
    run(
        "getsockopt",
        fd,
        true,
        Cancel::No,
        || unsafe { real::getsockopt(fd, level, name, val, len) } as isize,
        || unsafe { policy::getsockopt(fd, level, name, val, len) },
        no_then,
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded arguments.
    run(
        "getsockname",
        fd,
        true,
        Cancel::No,
        || unsafe { real::getsockname(fd, addr, len) } as isize,
        // SAFETY: forwarded arguments.
        || unsafe { policy::getsockname(fd, addr, len) },
        no_then,
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    // close is a cancellation point: a pending cancel acts before the socket is forgotten (the
    // fd stays open then, and ours).
    if !crate::stands_down() {
        // SAFETY: no arguments; nothing of ours alive in this frame.
        unsafe { pthread_testcancel() };
    }
    after(|| forget(fd));
    // SAFETY: forwarded argument.
    unsafe { real::close(fd) }
}

/// Everything we knew about the numbers first..=last goes (the program is closing them).
fn forget_range(first: c_uint, last: c_uint) {
    state::forget_range(first, last);
    netlink::forget_range(first, last);
    log::forget_range(first, last);
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // Forget only what the kernel will close: a call it refuses (EINVAL) closes nothing.
    let known = (libc::CLOSE_RANGE_CLOEXEC | libc::CLOSE_RANGE_UNSHARE) as c_int;
    if flags & !known == 0 && first <= last && flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        after(|| forget_range(first, last));
    }
    // SAFETY: forwarded arguments.
    unsafe { real::close_range(first, last, flags) }
}

/// glibc's closefrom calls close_range internally, past the hook above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(low: c_int) {
    // glibc closes from max(low, 0); it cannot fail (it aborts if it cannot close).
    after(|| forget_range(low.max(0) as c_uint, c_uint::MAX));
    // SAFETY: forwarded argument.
    unsafe { real::closefrom(low) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: forwarded argument.
    let new = unsafe { real::dup(fd) };
    if new >= 0 {
        after(|| state::dup(fd, new));
    }
    new
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: forwarded arguments.
    let r = unsafe { real::dup2(old, new) };
    if r >= 0 && old != new {
        after(|| {
            forget(new);
            state::dup(old, new);
        });
    }
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: forwarded arguments.
    let r = unsafe { real::dup3(old, new, flags) };
    if r >= 0 {
        after(|| {
            forget(new);
            state::dup(old, new);
        });
    }
    r
}

fn after_fcntl(fd: c_int, cmd: c_int, r: c_int) -> c_int {
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        after(|| state::dup(fd, r));
    }
    r
}

/// fcntl is C-variadic; its optional third argument arrives as a pointer-sized integer on the
/// x86-64 and aarch64 Linux ABIs (see real.rs).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    // SAFETY: forwarded arguments.
    after_fcntl(fd, cmd, unsafe { real::fcntl(fd, cmd, arg) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    // SAFETY: forwarded arguments.
    after_fcntl(fd, cmd, unsafe { real::fcntl64(fd, cmd, arg) })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded arguments.
    let new = unsafe { real::accept(fd, addr, len) };
    if new >= 0 {
        // Accepted sockets are not ours to manage; the number may have been a stale socket.
        after(|| forget(new));
    }
    new
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: forwarded arguments.
    let new = unsafe { real::accept4(fd, addr, len, flags) };
    if new >= 0 {
        after(|| forget(new));
    }
    new
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    // SAFETY: forwarded arguments.
    let real = || unsafe { real::sendto(fd, buf, len, flags, addr, alen) };
    run(
        "sendto",
        fd,
        true,
        Cancel::Point,
        real,
        || policy::send(fd, || !addr.is_null(), flags),
        |t, ret, e| policy::after_send(fd, t, ret, e),
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: forwarded arguments; msg is read (safely) only for a deferred UDP socket.
    let real = || unsafe { real::sendmsg(fd, msg, flags) };
    run(
        "sendmsg",
        fd,
        true,
        Cancel::Point,
        real,
        || policy::send(fd, || unsafe { policy::names_destination(msg) }, flags),
        |t, ret, e| policy::after_send(fd, t, ret, e),
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, n: c_uint, flags: c_int) -> c_int {
    // SAFETY: forwarded arguments; msgs[0] is read (safely) only for a deferred UDP socket.
    let real = || unsafe { real::sendmmsg(fd, msgs, n, flags) } as isize;
    let policy = || {
        let first = msgs.cast::<msghdr>().cast_const();
        // No message, no send: MSG_FASTOPEN then connects nothing either.
        let flags = if n == 0 {
            flags & !libc::MSG_FASTOPEN
        } else {
            flags
        };
        policy::send(
            fd,
            || n > 0 && unsafe { policy::names_destination(first) },
            flags,
        )
    };
    run(
        "sendmmsg",
        fd,
        true,
        Cancel::Point,
        real,
        policy,
        |t, ret, e| policy::after_send(fd, t, ret, e),
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: forwarded arguments.
    run(
        "recv",
        fd,
        true,
        Cancel::Point,
        || unsafe { real::recv(fd, buf, len, flags) },
        || policy::before_recv(fd),
        no_then,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: forwarded arguments.
    run(
        "recvfrom",
        fd,
        true,
        Cancel::Point,
        || unsafe { real::recvfrom(fd, buf, len, flags, addr, alen) },
        || policy::before_recv(fd),
        no_then,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: forwarded arguments.
    run(
        "recvmsg",
        fd,
        true,
        Cancel::Point,
        || unsafe { real::recvmsg(fd, msg, flags) },
        || policy::before_recv(fd),
        no_then,
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    n: c_uint,
    flags: c_int,
    timeout: *mut timespec,
) -> c_int {
    // SAFETY: forwarded arguments.
    run(
        "recvmmsg",
        fd,
        true,
        Cancel::Point,
        || unsafe { real::recvmmsg(fd, msgs, n, flags, timeout) } as isize,
        || policy::before_recv(fd),
        no_then,
    ) as c_int
}
