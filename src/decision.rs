//! What a hook decided: do the call ourselves, or pass it to libc untouched and say why.
//! Every `Pass` is logged at debug, so `CONNECTX_LOG=debug` explains each call left alone.

use libc::c_int;
use std::cell::Cell;

/// What a hook knows about its own thread's call in progress.
///
/// Nothing here can be left stale by a jump (siglongjmp out of a signal handler, pthread_exit,
/// a cancellation): the only "inside" mark is the address of the frame that set it, so a later
/// call of the thread tells a frame still running (its own stack pointer is below it) from one
/// that is gone (at or above it) without any code having run at the jump (`policy_frame`).
pub struct InCall {
    /// The stack address of the hook frame whose policy phase is running on this thread (0:
    /// none). Set only while connectx's own work runs, never across the program's real call.
    pub frame: Cell<usize>,
    /// The answer the policy has for the program, once it made the program's call (or decided
    /// its result): if the policy then panics, the hook returns this rather than make the call
    /// a second time (a send would go out twice).
    pub answer: Cell<Option<(isize, c_int)>>,
    /// This thread's number for `udp::Busy` tokens (0: not given yet).
    pub ordinal: Cell<u32>,
    /// Counts this thread's outer policy phases: a busy token taken in a phase that is no
    /// longer running (jumped out of) is told from one of the phase a signal handler
    /// interrupted (`udp::Busy`).
    pub generation: Cell<u32>,
    /// The program's cancellation state while the marked phase runs with it disabled: put back
    /// by the thread's next phase if that one was jumped out of.
    pub cancel: Cell<c_int>,
}

thread_local! {
    // const-initialised and without destructor: safe in any thread, after fork, in vfork.
    pub static IN_CALL: InCall = const {
        InCall {
            frame: Cell::new(0),
            answer: Cell::new(None),
            ordinal: Cell::new(0),
            generation: Cell::new(0),
            cancel: Cell::new(0),
        }
    };
}

/// Where a hook entry stands with respect to a policy phase of its own thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// No policy phase of this thread is running (none set, or the one set was left by a jump).
    Outer,
    /// A policy phase of this thread is running below us: a signal handler's call (the library
    /// makes none of its own through the hooks: `real`), which gets the policy all the same.
    Nested,
}

/// Whether a policy phase of this thread is running: `here` is an address in the caller's
/// frame. A siglongjmp out of a phase clears the mark itself (glibc's cleanup chain,
/// `hooks::guarded`); for a jump glibc does not see, a frame that set the mark and was jumped
/// over lies below `here` now (when the call comes from no deeper a stack): stale, counts as
/// none. A signal handler
/// on an alternate stack (sigaltstack) may sit above the frame it interrupted: there the kernel
/// is asked (one system call, only while a mark is set).
pub fn policy_frame(here: usize) -> Entry {
    let frame = IN_CALL.try_with(|c| c.frame.get()).unwrap_or(0);
    if frame == 0 {
        return Entry::Outer;
    }
    // The stack grows down: a frame still running is at a higher address than its callees.
    if here < frame {
        return Entry::Nested;
    }
    // SAFETY: querying only (NULL new stack); ss is valid for writes.
    let mut ss: libc::stack_t = unsafe { std::mem::zeroed() };
    let on_alt = unsafe { libc::sigaltstack(std::ptr::null(), &mut ss) } == 0
        && ss.ss_flags & libc::SS_ONSTACK != 0;
    if on_alt { Entry::Nested } else { Entry::Outer }
}

/// This thread's current policy phase: (its number, the phase's generation), or None outside
/// any (`udp::Busy` tokens).
pub fn current_phase() -> Option<(u32, u32)> {
    let g = IN_CALL
        .try_with(|c| (c.frame.get() != 0).then(|| c.generation.get()))
        .ok()
        .flatten()?;
    Some((thread_ordinal(), g))
}

/// This thread's number (1, 2, …; given once, kept by a fork child's only thread).
pub fn thread_ordinal() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    IN_CALL
        .try_with(|c| {
            let mut n = c.ordinal.get();
            if n == 0 {
                // 0 is never given (it means "none"); 2^24 threads later the numbers wrap.
                n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xff_ffff;
                n = n.max(1);
                c.ordinal.set(n);
            }
            n
        })
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Not a socket we manage (not TCP/UDP over IPv4/IPv6, created before us, disabled, …).
    NotOurs,
    /// Arguments we do not understand: the kernel gives its own answer (EFAULT, EINVAL, …).
    KernelAnswers,
    /// A listening socket, or one that became a server: it keeps the kernel's semantics.
    Server,
    /// The socket already has its address; the kernel handles a second bind or its port.
    AlreadyBound,
    /// TCP connect on an unbound socket: the kernel already shares ports per 4-tuple.
    KernelSharesPorts,
    /// Not one of the options we manage.
    OtherOption,
    /// Nothing deferred or changed on this socket for this call.
    NothingToDo,
    /// The UDP lock could not run (no SOCK_DIAG, no route, no port range, bind refused):
    /// the kernel's own behaviour for this call.
    LockUnavailable,
    /// No route to the destination: the kernel's own connect answers the program.
    NoRoute,
    /// This kernel lacks a feature the change needs (`features`): its own behaviour.
    KernelLacksFeature,
    /// An internal error: the real call with the original arguments.
    InternalError,
}

impl Pass {
    /// The counter for a pass that is a fallback (connectx wanted to act and could not); None
    /// for calls that are simply not ours to change. Only fallbacks are counted: they are rare,
    /// while the others happen on every send and receive (a shared counter there would cost).
    pub fn fallback(self) -> Option<crate::stats::Event> {
        use crate::stats::Event;
        match self {
            Pass::LockUnavailable => Some(Event::FallbackLockUnavailable),
            Pass::NoRoute => Some(Event::FallbackNoRoute),
            Pass::InternalError => Some(Event::FallbackInternalError),
            _ => None,
        }
    }
}

/// In words, for log lines.
impl std::fmt::Display for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pass::NotOurs => "not a socket connectx manages",
            Pass::KernelAnswers => "arguments the kernel answers itself",
            Pass::Server => "a server socket keeps the kernel's semantics",
            Pass::AlreadyBound => "the socket already has its address",
            Pass::KernelSharesPorts => "the kernel already shares ports per 4-tuple",
            Pass::OtherOption => "not an option connectx manages",
            Pass::NothingToDo => "nothing deferred or changed on this socket",
            Pass::LockUnavailable => {
                "the UDP lock could not run (no SOCK_DIAG, route, port range or bind)"
            }
            Pass::NoRoute => "no route to the destination; the kernel's connect answers",
            Pass::KernelLacksFeature => "this kernel lacks a feature it needs (see the info line)",
            Pass::InternalError => "internal error; the real call with the original arguments",
        })
    }
}

pub enum Verdict {
    /// We made the call: its return value, and the errno the program sees when it failed (on
    /// success the program's errno is left as it was).
    Done(isize, c_int),
    /// Call the real function with the original arguments.
    Pass(Pass),
    /// The program's own call, made now by the hook itself as its last act (blocking,
    /// cancellable, outside any catch and with connectx's state consistent before it), then
    /// `Then` with its result if it returns (`policy::after_call`).
    Call(Then),
}

/// What follows a program's call the hook made (`Verdict::Call`). Skipped when the call never
/// returns (cancelled, jumped out of): each says what the next call finds then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// TCP connect of a socket bound without a port: the kernel picked the port per 4-tuple.
    /// Skipped, the socket keeps DEFERRED: a later bind/getsockname/listen find it connected
    /// or connecting and the kernel answers them (EINVAL, its address), as without us.
    TcpDeferred,
    /// TCP connect on a fixed port, opened (SO_REUSEADDR) before the call. Skipped, the port
    /// stays open: the kernel still refuses a taken 4-tuple, and a program that tries again
    /// reconnects as the kernel allows (EALREADY/EISCONN).
    TcpFixed,
}

impl Verdict {
    /// The program's answer: `r`, and the errno it sees if `r` < 0. Remembered (`IN_CALL`).
    pub fn answer(r: isize, errno: c_int) -> Verdict {
        let _ = IN_CALL.try_with(|c| c.answer.set(Some((r, errno))));
        Verdict::Done(r, errno)
    }
    /// The result of the call just made: `r` and the errno it left.
    pub fn done(r: c_int) -> Verdict {
        Verdict::answer(r as isize, crate::sys::errno())
    }
    pub fn fail(errno: c_int) -> Verdict {
        Verdict::answer(-1, errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{self, UDP};
    use crate::udp::Busy;
    use std::time::{Duration, Instant};

    /// A phase left by a jump never gave its socket's busy token back: a signal handler of that
    /// same phase gets its answer at once (no wait for itself), the thread's next phase takes
    /// the token over.
    #[test]
    fn busy_tokens_tell_a_running_phase_from_one_jumped_out_of() {
        state::track(100_900, UDP);
        let r = state::get(100_900).unwrap();
        IN_CALL.with(|c| {
            c.frame.set(usize::MAX);
            c.generation.set(5);
        });
        std::mem::forget(Busy::take(r).expect("a free socket"));
        let t = Instant::now();
        assert!(
            Busy::take(r).is_none(),
            "a handler inside the holding phase"
        );
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "waited for itself"
        );
        IN_CALL.with(|c| c.generation.set(6));
        assert!(Busy::take(r).is_some(), "the next phase takes it over");
        assert_eq!(r.busy.load(std::sync::atomic::Ordering::Acquire), 0);
        IN_CALL.with(|c| c.frame.set(0));
        state::forget(100_900);
    }

    #[test]
    fn a_mark_above_the_caller_is_running_and_one_below_is_stale() {
        let here = 0x7000_0000usize;
        IN_CALL.with(|c| c.frame.set(here + 64));
        assert_eq!(policy_frame(here), Entry::Nested);
        IN_CALL.with(|c| c.frame.set(here - 64));
        assert_eq!(policy_frame(here), Entry::Outer);
        IN_CALL.with(|c| c.frame.set(0));
        assert_eq!(policy_frame(here), Entry::Outer);
    }
}
