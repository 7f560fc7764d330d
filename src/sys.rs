//! Small safe wrappers over the real socket calls that the policy makes on its own account.
//! Every wrapper returns `Result<_, errno>` and leaves the thread's errno as it found it, so the
//! program never sees an errno that we caused (PITFALLS 7).

use crate::real;
use libc::{c_int, c_void, sockaddr, socklen_t};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// Asynchronous signals held off while connectx holds what a jump out of a signal handler must
/// not leave behind (issue 16): a netlink lease, a sentinel holding a port's lock, the program's
/// socket on a port locked for a moment. Only around the UDP lock's and the sharing checks'
/// work, which never waits for a peer (bounded: a few ms at worst); two system calls there, none
/// on the kernel's own paths. Synchronous faults are never held (they could not be).
pub struct SignalsHeld(libc::sigset_t);

impl SignalsHeld {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        // SAFETY: sigset_t is plain data; the calls only read/write the sets given.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            for s in [
                libc::SIGSEGV,
                libc::SIGBUS,
                libc::SIGFPE,
                libc::SIGILL,
                libc::SIGTRAP,
                libc::SIGSYS,
            ] {
                libc::sigdelset(&mut all, s);
            }
            let e = errno();
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
            set_errno(e);
            SignalsHeld(old)
        }
    }
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        let e = errno();
        // SAFETY: restoring the mask saved by `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        set_errno(e);
    }
}

/// Restores errno when dropped: wrap everything the library adds to a call.
pub struct KeepErrno(c_int);

impl KeepErrno {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        KeepErrno(errno())
    }
}

impl Drop for KeepErrno {
    fn drop(&mut self) {
        set_errno(self.0)
    }
}

/// process_vm_readv is not allowed here (seccomp, e.g. a container without CAP_SYS_PTRACE).
static VM_READ_REFUSED: AtomicBool = AtomicBool::new(false);

/// Copies `dst.len()` bytes of the program's memory at `src` without trusting the pointer:
/// Err(EFAULT) where the kernel would answer EFAULT, instead of a crash in the program
/// (issue 5, guard mode). process_vm_readv on our own pid is always permitted (ptrace access
/// to one's own thread group) and copies nothing on a bad address. The pid is asked each time:
/// a child made by _Fork() or a raw clone runs no fork handler, and a cached pid would read the
/// parent's memory. Where a seccomp filter forbids the call (ENOSYS, EPERM), the bytes are read
/// directly, which is the C contract of the call anyway.
///
/// # Safety
/// `src` is what the program passed for these bytes: readable by the contract of its call. Only
/// the fallback (process_vm_readv refused) relies on that.
pub unsafe fn copy_from_program(src: *const u8, dst: &mut [u8]) -> Result<(), c_int> {
    if dst.is_empty() {
        return Ok(());
    }
    if !VM_READ_REFUSED.load(Relaxed) {
        let _e = KeepErrno::new();
        let local = libc::iovec {
            iov_base: dst.as_mut_ptr().cast(),
            iov_len: dst.len(),
        };
        let remote = libc::iovec {
            iov_base: src as *mut c_void,
            iov_len: dst.len(),
        };
        // SAFETY: getpid has no preconditions; `local` is our own buffer of iov_len bytes and
        // the kernel checks `remote`.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n == dst.len() as isize {
            return Ok(());
        }
        if n >= 0 || !matches!(errno(), libc::ENOSYS | libc::EPERM) {
            return Err(libc::EFAULT);
        }
        VM_READ_REFUSED.store(true, Relaxed);
        crate::debug!(
            "process_vm_readv refused (errno {}): addresses are read directly",
            errno()
        );
    }
    // SAFETY: the program promised `src` readable for these bytes (its call's contract).
    unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    Ok(())
}

fn check(r: c_int) -> Result<(), c_int> {
    if r < 0 { Err(errno()) } else { Ok(()) }
}

pub fn set_int(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
    let _e = KeepErrno::new();
    // SAFETY: value lives for the call and its size is passed.
    check(unsafe { real::setsockopt(fd, level, name, (&value as *const c_int).cast(), 4) })
}

pub fn get_int(fd: c_int, level: c_int, name: c_int) -> Result<c_int, c_int> {
    let _e = KeepErrno::new();
    let mut v: c_int = 0;
    let mut len: socklen_t = 4;
    // SAFETY: v and len are valid for writes of the sizes given.
    check(unsafe { real::getsockopt(fd, level, name, (&mut v as *mut c_int).cast(), &mut len) })?;
    Ok(v)
}

/// SO_COOKIE: the kernel's 64-bit identity of a socket (Linux 4.12+).
pub fn cookie(fd: c_int) -> Result<u64, c_int> {
    let _e = KeepErrno::new();
    let mut v: u64 = 0;
    let mut len: socklen_t = 8;
    // SAFETY: v and len are valid for writes of the sizes given.
    check(unsafe {
        real::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut v as *mut u64).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(v)
}

pub fn bind(fd: c_int, addr: &crate::addr::SockAddr) -> Result<(), c_int> {
    let _e = KeepErrno::new();
    let raw = addr.to_raw();
    // SAFETY: raw holds a sockaddr of raw.len() bytes.
    check(unsafe { real::bind(fd, raw.ptr(), raw.len()) })
}

pub fn getsockname(fd: c_int) -> Result<crate::addr::SockAddr, c_int> {
    let _e = KeepErrno::new();
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
    // SAFETY: st is a sockaddr_storage of len bytes.
    check(unsafe {
        real::getsockname(
            fd,
            (&mut st as *mut libc::sockaddr_storage).cast::<sockaddr>(),
            &mut len,
        )
    })?;
    // SAFETY: the kernel filled len bytes of st.
    unsafe { crate::addr::SockAddr::from_raw((&st as *const libc::sockaddr_storage).cast(), len) }
        .ok_or(libc::EAFNOSUPPORT)
}

/// Is anything waiting on the socket: a datagram, or an error (sk_err or the error queue)?
/// poll(2) only looks; reading SO_ERROR or receiving would consume the error.
pub fn has_pending(fd: c_int) -> bool {
    let _e = KeepErrno::new();
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLERR) != 0
}

pub fn close(fd: c_int) {
    let _e = KeepErrno::new();
    // SAFETY: fd is one of our own descriptors.
    unsafe { real::close(fd) };
}

/// CLOCK_MONOTONIC_COARSE in milliseconds (vDSO: no system call).
/// Monotonic nanoseconds (vDSO: no system call), for time budgets.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
