//! The exported C symbols. Each is a few lines: call the policy under the guard, or do the real
//! call with the original arguments. The guard (`run`, `after`) gives every hook the same rules:
//! - before the library is initialised, or when re-entered from our own code: the real call;
//! - a panic never crosses the C boundary: it is caught and the real call is made instead (or,
//!   if the policy had made it already, its answer is returned: `decision::IN_CALL`);
//! - errno: the program sees the real call's errno, or on success the errno it had before.

use crate::decision::{IN_CALL, Pass, Verdict};
use crate::sys::{errno, set_errno};
use crate::{log, netlink, policy, real, state};
use libc::{
    c_int, c_uint, c_void, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t, timespec,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `policy`; on `Pass` (logged at debug unless `quiet`) or panic, runs `real`.
#[inline]
fn run(
    call: &str,
    fd: c_int,
    quiet: bool,
    real: impl FnOnce() -> isize,
    policy: impl FnOnce() -> Verdict,
) -> isize {
    if crate::stands_down() || !crate::ensure_init() {
        return real();
    }
    IN_CALL.with(|c| {
        if c.inside.replace(true) {
            return real();
        }
        c.answer.set(None);
        let saved = errno();
        let verdict = catch_unwind(AssertUnwindSafe(policy));
        c.inside.set(false);
        match verdict {
            Ok(Verdict::Done(ret, e)) => {
                set_errno(if ret < 0 { e } else { saved });
                ret
            }
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
                set_errno(saved);
                real()
            }
            // A panic: the real call, unless the policy had already made it.
            Err(_) => {
                crate::stats::count_and_note(
                    crate::stats::Event::Panic,
                    format_args!("{call}(fd {fd}): internal error caught; the kernel's call made"),
                );
                match c.answer.take() {
                    Some((ret, e)) => {
                        set_errno(if ret < 0 { e } else { saved });
                        ret
                    }
                    None => {
                        set_errno(saved);
                        real()
                    }
                }
            }
        }
    })
}

/// Bookkeeping after (or before) a real call: errno kept, panics caught. It only touches our own
/// tables (no call that could come back into a hook), so it needs no re-entry guard.
#[inline]
fn after(f: impl FnOnce()) {
    if crate::stands_down() || !crate::ensure_init() {
        return;
    }
    let saved = errno();
    let _ = catch_unwind(AssertUnwindSafe(f));
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
        || unsafe { real::bind(fd, addr, len) } as isize,
        || unsafe { policy::bind(fd, addr, len) },
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: forwarded arguments (the policy reads addr safely, or after the kernel did).
    run(
        "connect",
        fd,
        false,
        || unsafe { real::connect(fd, addr, len) } as isize,
        || unsafe { policy::connect(fd, addr, len) },
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: forwarded arguments.
    run(
        "listen",
        fd,
        false,
        || unsafe { real::listen(fd, backlog) } as isize,
        || policy::listen(fd),
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
        || unsafe { real::setsockopt(fd, level, name, val, len) } as isize,
        || unsafe { policy::setsockopt(fd, level, name, val, len) },
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
        || unsafe { real::getsockopt(fd, level, name, val, len) } as isize,
        || unsafe { policy::getsockopt(fd, level, name, val, len) },
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded arguments.
    run(
        "getsockname",
        fd,
        true,
        || unsafe { real::getsockname(fd, addr, len) } as isize,
        // SAFETY: forwarded arguments.
        || unsafe { policy::getsockname(fd, addr, len) },
    ) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
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
    run("sendto", fd, true, real, || {
        policy::send(fd, || !addr.is_null(), flags, real)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: forwarded arguments; msg is read (safely) only for a deferred UDP socket.
    let real = || unsafe { real::sendmsg(fd, msg, flags) };
    run("sendmsg", fd, true, real, || {
        policy::send(
            fd,
            || unsafe { policy::names_destination(msg) },
            flags,
            real,
        )
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, n: c_uint, flags: c_int) -> c_int {
    // SAFETY: forwarded arguments; msgs[0] is read (safely) only for a deferred UDP socket.
    let real = || unsafe { real::sendmmsg(fd, msgs, n, flags) } as isize;
    run("sendmmsg", fd, true, real, || {
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
            real,
        )
    }) as c_int
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: forwarded arguments.
    run(
        "recv",
        fd,
        true,
        || unsafe { real::recv(fd, buf, len, flags) },
        || policy::before_recv(fd),
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
        || unsafe { real::recvfrom(fd, buf, len, flags, addr, alen) },
        || policy::before_recv(fd),
    )
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: forwarded arguments.
    run(
        "recvmsg",
        fd,
        true,
        || unsafe { real::recvmsg(fd, msg, flags) },
        || policy::before_recv(fd),
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
        || unsafe { real::recvmmsg(fd, msgs, n, flags, timeout) } as isize,
        || policy::before_recv(fd),
    ) as c_int
}
