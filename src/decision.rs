//! What a hook decided: do the call ourselves, or pass it to libc untouched and say why.
//! Every `Pass` is logged at debug, so `CONNECTX_LOG=debug` explains each call left alone.

use libc::c_int;
use std::cell::Cell;

/// What a hook knows about its own thread's call in progress.
pub struct InCall {
    /// A hook is running on this thread: calls our own code makes pass straight through.
    pub inside: Cell<bool>,
    /// The answer the policy has for the program, once it made the program's call (or decided
    /// its result): if the policy then panics, the hook returns this rather than make the call
    /// a second time (a send would go out twice).
    pub answer: Cell<Option<(isize, c_int)>>,
}

thread_local! {
    // const-initialised and without destructor: safe in any thread, after fork, in vfork.
    pub static IN_CALL: InCall = const {
        InCall {
            inside: Cell::new(false),
            answer: Cell::new(None),
        }
    };
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
