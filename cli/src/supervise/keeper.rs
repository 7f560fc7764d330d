//! The keeper: what keeps a supervised program from ever seeing ENOSYS. If the last holder of
//! the listener goes, the kernel fails every trapped call with ENOSYS (SHAPES.md §D), so a
//! small process forked from the supervisor before it starts serving holds the listener too.
//! It waits until the supervisor is gone (its end of a pipe closes: an exit, a crash, SIGKILL),
//! then answers CONTINUE to the calls the supervisor had taken and not answered (their ids are
//! in memory shared with it), and to every later call, until no supervised process is left
//! (the listener hangs up). The program then runs as the kernel alone would.
//!
//! A call the supervisor took in the instant it was killed (SIGKILL lands as its RECV returns,
//! before the id is written down) is in no slot; with WAIT_KILLABLE_RECV its thread would wait
//! for good. The kernel numbers notifications one after another and ID_VALID says whether one
//! is taken and unanswered, so the keeper also answers every such id within `SCAN` of the
//! highest id the supervisor wrote down (`HIGH_WATER`): the lost ones are among its last few
//! takes, since RECV hands out the oldest waiting call first. 2 × SCAN ioctls, about 1 ms. The keeper leaves
//! the terminal's session and process group, so Ctrl-C and the signals sent to the program's
//! group do not reach it; it holds no other file (not the program's stdout, not a pipe a
//! caller waits on).

use super::notify::{Answer, send};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

pub const SLOTS: usize = 512;
/// The slot that holds the highest id the supervisor took (the others: one per worker).
pub const HIGH_WATER: usize = SLOTS - 1;
/// How far from the high-water mark lost ids can be: more than the workers taking at once.
const SCAN: u64 = 1024;

/// Starts the keeper for `listener`: returns the slots shared with it and our end of the pipe
/// (kept open for as long as this process lives).
pub fn start(listener: libc::c_int) -> Option<(&'static [AtomicU64], OwnedFd)> {
    let size = SLOTS * 8;
    // SAFETY: an anonymous shared mapping; no preconditions.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if m == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: zeroed memory of SLOTS u64s is SLOTS atomics of 0; never unmapped.
    let slots: &'static [AtomicU64] =
        unsafe { std::slice::from_raw_parts(m.cast::<AtomicU64>(), SLOTS) };
    let mut p = [0; 2];
    // SAFETY: p has room for two fds.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: fork; the child only makes system calls and exits with _exit.
    match unsafe { libc::fork() } {
        -1 => {
            // SAFETY: our own fds.
            unsafe {
                libc::close(p[0]);
                libc::close(p[1]);
            }
            None
        }
        0 => {
            // SAFETY: in the child: our own fds.
            unsafe { keep(listener, p[0], p[1], slots) }
        }
        _ => {
            // SAFETY: our own fds.
            unsafe { libc::close(p[0]) };
            Some((slots, unsafe { OwnedFd::from_raw_fd(p[1]) }))
        }
    }
}

/// The keeper's life (the forked child): never returns.
unsafe fn keep(
    listener: libc::c_int,
    wait_fd: libc::c_int,
    write_end: libc::c_int,
    slots: &[AtomicU64],
) -> ! {
    // SAFETY: system calls on our own fds and signal dispositions.
    unsafe {
        // Only the supervisor holds the pipe's write end: its death is our EOF.
        libc::close(write_end);
        libc::setsid();
        // Told apart from the supervisor in `connectx status` (is_supervisor).
        libc::prctl(libc::PR_SET_NAME, c"connectx-keeper".as_ptr());
        for s in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGQUIT,
            libc::SIGTERM,
            libc::SIGPIPE,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGALRM,
        ] {
            libc::signal(s, libc::SIG_IGN);
        }
        // Only the listener (3) and the pipe (4) stay, and /dev/null as 0, 1, 2.
        let l = libc::fcntl(listener, libc::F_DUPFD_CLOEXEC, 100);
        let w = libc::fcntl(wait_fd, libc::F_DUPFD_CLOEXEC, 100);
        libc::dup2(l, 3);
        libc::dup2(w, 4);
        libc::close_range(5, libc::c_uint::MAX, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        if null > 4 {
            libc::close(null);
        }
        let mut b = 0u8;
        while libc::read(4, (&mut b as *mut u8).cast(), 1) != 0 {
            if *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        // The supervisor is gone: its calls in flight first, then every call, CONTINUE.
        let high = slots[HIGH_WATER].load(Ordering::Acquire);
        for s in &slots[..HIGH_WATER] {
            let id = s.swap(0, Ordering::AcqRel);
            if id != 0 {
                send(3, id, Answer::Continue);
            }
        }
        if high != 0 {
            // Ids wrap (the kernel starts them at a random value): wrapping arithmetic.
            for k in 0..2 * SCAN {
                let mut id = high.wrapping_sub(SCAN).wrapping_add(k);
                if libc::ioctl(3, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 {
                    send(3, id, Answer::Continue);
                }
            }
        }
        loop {
            let mut pfd = libc::pollfd {
                fd: 3,
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut pfd, 1, -1) < 0 {
                continue;
            }
            if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                libc::_exit(0);
            }
            let mut req: libc::seccomp_notif = std::mem::zeroed();
            if libc::ioctl(3, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) == 0 {
                send(3, req.id, Answer::Continue);
            }
        }
    }
}
