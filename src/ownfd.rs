//! The library's own descriptors (netlink sockets, the log file) and how they stay apart from the
//! program's:
//! - they live at high numbers (just below min(RLIMIT_NOFILE soft limit, 1024)), close-on-exec,
//!   so the program's numbers are the ones it would have without us and its next open() never
//!   lands on a number we still think is ours;
//! - their identity (SO_COOKIE, or the inode) is remembered at creation and checked before use,
//!   so a number the program closed behind our back (raw syscall) and reused is never written to
//!   or closed;
//! - a fork gate: `fork()` waits (bounded) for a thread that is between creating one of our fds
//!   and recording it, so the child's handler knows every fd it inherited and closes them.

use crate::real;
use crate::sys::{KeepErrno, errno};
use libc::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering::*};

/// How many numbers we keep room for below the top (pools, temporaries, the log).
const ROOM: c_int = 64;
/// Never above this: the kernel sizes a process's fd table to its highest number.
const CEILING: c_int = 1024;

/// The lowest number our fds are moved to, or 0 when the limit is too low to keep them apart
/// (they then stay where the kernel put them; identity checks still protect the program).
pub fn high_floor() -> c_int {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 0;
    }
    let top = rl.rlim_cur.min(CEILING as libc::rlim_t) as c_int;
    if top < 2 * ROOM { 0 } else { top - ROOM }
}

/// Moves our new `fd` up to the high floor (close-on-exec); keeps it where it is if that fails
/// (EMFILE above the floor, EINVAL after the program lowered its limit).
pub fn move_high(fd: c_int) -> c_int {
    let _e = KeepErrno::new();
    let floor = high_floor();
    if fd >= floor {
        return fd;
    }
    // SAFETY: fcntl F_DUPFD_CLOEXEC on our own fd, through the real function.
    let high = unsafe { real::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor as usize) };
    if high < 0 {
        return fd;
    }
    crate::sys::close(fd);
    high
}

/// A socket's identity: SO_COOKIE (unique for the boot), or its inode where the kernel has no
/// SO_COOKIE (before 4.12). None: not a socket, not open.
pub fn socket_ident(fd: c_int) -> Option<u64> {
    match crate::sys::cookie(fd) {
        Ok(c) => Some(c),
        Err(libc::ENOPROTOOPT) => file_ident(fd).map(|(_, ino)| ino | 1 << 63),
        Err(_) => None,
    }
}

/// (st_dev, st_ino) of an open fd.
pub fn file_ident(fd: c_int) -> Option<(u64, u64)> {
    let _e = KeepErrno::new();
    // SAFETY: st is valid for writes; fstat has no other preconditions.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Closes `fd` only if it is still the socket we made (identity `ident`).
pub fn close_if_ours(fd: c_int, ident: u64) {
    if fd >= 0 && socket_ident(fd) == Some(ident) {
        crate::sys::close(fd);
    }
}

const SO_NETNS_COOKIE: c_int = 71;
static NO_NETNS_COOKIE: AtomicBool = AtomicBool::new(false);

/// The network namespace a socket lives in: its SO_NETNS_COOKIE (Linux 5.14+). Where the kernel
/// has none, the inode of the calling thread's namespace (/proc/thread-self/ns/net), tagged in
/// the top bit: the socket is taken to be in the namespace the thread is in. 0: unknown.
pub fn netns_of(fd: c_int) -> u64 {
    let _e = KeepErrno::new();
    if !NO_NETNS_COOKIE.load(Relaxed) {
        let mut v: u64 = 0;
        let mut len: libc::socklen_t = 8;
        // SAFETY: v and len are valid for writes of the sizes given.
        let r = unsafe {
            real::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_NETNS_COOKIE,
                (&mut v as *mut u64).cast(),
                &mut len,
            )
        };
        if r == 0 {
            return v;
        }
        if errno() != libc::ENOPROTOOPT {
            return 0;
        }
        NO_NETNS_COOKIE.store(true, Relaxed);
    }
    // SAFETY: a NUL-terminated path; st is valid for writes.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c"/proc/thread-self/ns/net".as_ptr(), &mut st) } == 0 {
        st.st_ino | 1 << 63
    } else {
        0
    }
}

// The fork gate. An opener counts itself in OPENING, then looks at FORKING; fork's prepare
// handler counts itself in FORKING, then waits for OPENING to drain. Both SeqCst: one of them
// sees the other. An opener never goes on while a fork is under way (issue 16: with two threads
// forking back to back FORKING is almost never clear, an opener's bounded wait ran out, it went
// on, and about one child in 2,000 inherited a temporary netlink socket not recorded yet): it
// gives up instead (the caller's EAGAIN, `try_enter`). A fork that ends lets the openers
// waiting for it in first (`after_fork`), so that back-to-back forks do not starve them.
static OPENING: AtomicU32 = AtomicU32::new(0);
static FORKING: AtomicU32 = AtomicU32::new(0);
/// Openers waiting for a fork to end.
static WAITING: AtomicU32 = AtomicU32::new(0);
/// Bounded waits (a fork from a signal handler that interrupted an opener in the same thread
/// must not wait for itself forever).
const SPINS: u32 = 100_000;

/// Held while one of our fds is being created and recorded.
pub struct Opening(());

impl Opening {
    /// The gate, or None when forks kept it closed for SPINS yields: then make no fd.
    pub fn try_enter() -> Option<Opening> {
        let mut spins = 0;
        loop {
            OPENING.fetch_add(1, SeqCst);
            if FORKING.load(SeqCst) == 0 {
                return Some(Opening(()));
            }
            OPENING.fetch_sub(1, SeqCst);
            if spins >= SPINS {
                return None;
            }
            WAITING.fetch_add(1, SeqCst);
            while FORKING.load(SeqCst) != 0 && spins < SPINS {
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
                spins += 1;
            }
            WAITING.fetch_sub(1, SeqCst);
        }
    }

    /// The gate, or after SPINS yields on anyway (the log file, which must open).
    pub fn enter() -> Opening {
        Self::try_enter().unwrap_or_else(|| {
            OPENING.fetch_add(1, SeqCst);
            Opening(())
        })
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        OPENING.fetch_sub(1, SeqCst);
    }
}

/// pthread_atfork prepare: no fd of ours is half-recorded while the process is copied.
pub fn before_fork() {
    FORKING.fetch_add(1, SeqCst);
    for _ in 0..SPINS {
        if OPENING.load(SeqCst) == 0 {
            return;
        }
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// pthread_atfork parent and child.
pub fn after_fork(child: bool) {
    if child {
        // The openers and the other forks were other threads: they do not exist in the child.
        OPENING.store(0, SeqCst);
        WAITING.store(0, SeqCst);
        FORKING.store(0, SeqCst);
        return;
    }
    FORKING.fetch_sub(1, SeqCst);
    // Openers that waited for this fork go first (bounded): a fork right behind this one
    // (another thread's) would otherwise close the gate before they see it open.
    for _ in 0..64 {
        if WAITING.load(SeqCst) == 0 {
            break;
        }
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// Short-lived sockets of ours that are not netlink (the UDP lock's sentinels): recorded inside
/// the fork gate while they live, so that a fork child closes its copies at once (a sentinel
/// copy would hold its port's lock for as long as the child lives). (fd + 1, 0 = free.)
static SCRATCH: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];

/// A socket of ours for a moment (`close_scratch` when done). EAGAIN when 32 are open already.
pub fn scratch_socket(domain: c_int, ty: c_int) -> Result<c_int, c_int> {
    let _gate = Opening::try_enter().ok_or(libc::EAGAIN)?;
    // SAFETY: plain socket(2) through the real function.
    let fd = unsafe { real::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(errno());
    }
    if SCRATCH
        .iter()
        .any(|s| s.compare_exchange(0, fd + 1, AcqRel, Relaxed).is_ok())
    {
        return Ok(fd);
    }
    crate::sys::close(fd);
    Err(libc::EAGAIN)
}

/// Closes a socket `scratch_socket` made.
pub fn close_scratch(fd: c_int) {
    let _gate = Opening::enter();
    if let Some(s) = SCRATCH.iter().find(|s| s.load(Acquire) == fd + 1) {
        s.store(0, Release);
    }
    crate::sys::close(fd);
}

/// In a fork child: the scratch sockets recorded are our copies of the parent's.
pub fn after_fork_in_child() {
    for s in &SCRATCH {
        let v = s.swap(0, AcqRel);
        if v > 0 {
            crate::sys::close(v - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_fds_go_high_and_close_on_exec() {
        // SAFETY: a NUL-terminated path.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0);
        let high = move_high(fd);
        let floor = high_floor();
        assert!(floor == 0 || high >= floor, "{high} below {floor}");
        // SAFETY: fcntl on our own fd.
        let flags = unsafe { libc::fcntl(high, libc::F_GETFD) };
        assert!(floor == 0 || flags & libc::FD_CLOEXEC != 0);
        // SAFETY: the low number was closed by move_high.
        assert!(floor == 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0);
        crate::sys::close(high);
    }

    #[test]
    fn close_if_ours_leaves_another_socket_alone() {
        // SAFETY: plain socket calls on our own fds.
        unsafe {
            let a = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
            let ident = socket_ident(a).unwrap();
            // The number now names another socket (as after a close and reuse).
            let c = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
            assert_eq!(libc::dup2(c, a), a);
            close_if_ours(a, ident);
            assert!(
                libc::fcntl(a, libc::F_GETFD) >= 0,
                "closed a socket not ours"
            );
            close_if_ours(a, socket_ident(c).unwrap());
            assert!(libc::fcntl(a, libc::F_GETFD) < 0);
            libc::close(c);
        }
    }
}
