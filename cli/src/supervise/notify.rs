//! The notification loop: workers each wait on the listener (several may wait at once: the
//! kernel hands each notification to one), and a worker that takes one while none is left
//! waiting starts another first, so a slow call never holds up the others (SHAPES.md §D).
//!
//! Per call (docs/supervisor.md): the program's arguments are read once into our memory
//! (process_vm_readv), the program's socket is duplicated (pidfd_getfd) for the length of the
//! call only, ID_VALID proves the thread still waits in that call, then the core's policy runs
//! on the duplicate with our copy of the address and its answer is sent back. Calls that need
//! nothing from us get CONTINUE: the kernel runs them in the program as it made them.

use super::filter::Calls;
use super::record;
use connectx_core::decision::Verdict;
use connectx_core::state::{CONNECTED, Phase, TCP, UDP, V6};
use connectx_core::{features, policy, real, sys};
use libc::{c_int, seccomp_notif, seccomp_notif_resp};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// At most this many workers (each waits on the listener or serves one call).
const MAX_WORKERS: usize = 256;

pub struct Loop {
    pub listener: c_int,
    idle: AtomicUsize,
    workers: AtomicUsize,
    /// The id each worker is answering (0: none), in memory shared with the keeper, which
    /// answers them CONTINUE if this process dies in the middle (`keeper.rs`).
    slots: &'static [AtomicU64],
    calls: Calls,
}

impl Loop {
    pub fn start(listener: c_int, slots: &'static [AtomicU64], calls: Calls) {
        // 6.6+: the program's thread and the worker hand the CPU to each other directly at
        // each round trip (as a synchronous call would), instead of a wake-up on any CPU.
        // Older kernels refuse it (EINVAL): the ordinary wake-up.
        const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
        // SAFETY: the listener and a flags value.
        unsafe {
            libc::ioctl(
                listener,
                libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
            )
        };
        let l = Arc::new(Loop {
            listener,
            idle: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            slots,
            calls,
        });
        spawn_worker(&l);
    }
}

fn spawn_worker(l: &Arc<Loop>) {
    let n = l.workers.fetch_add(1, Ordering::AcqRel);
    if n >= MAX_WORKERS.min(super::keeper::HIGH_WATER) {
        l.workers.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    l.idle.fetch_add(1, Ordering::AcqRel);
    let l2 = Arc::clone(l);
    let spawned = std::thread::Builder::new()
        .name("cx-supervise".into())
        .stack_size(256 * 1024)
        .spawn(move || worker(l2, n));
    if spawned.is_err() {
        l.idle.fetch_sub(1, Ordering::AcqRel);
        l.workers.fetch_sub(1, Ordering::AcqRel);
    }
}

fn worker(l: Arc<Loop>, slot: usize) {
    loop {
        // SAFETY: seccomp_notif is plain data; RECV wants it zeroed.
        let mut req: seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the listener and a buffer of the ioctl's type.
        let r = unsafe { libc::ioctl(l.listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
        if r != 0 {
            match sys::errno() {
                libc::EINTR => continue,
                // The program's thread went away before we took its call; or no supervised
                // process is left (the listener hangs up), when RECV fails at once: stop.
                libc::ENOENT if !hung_up(l.listener) => continue,
                _ => {
                    l.idle.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
            }
        }
        l.slots[slot].store(req.id, Ordering::Release);
        // The keeper's anchor for calls taken in the instant of a kill (keeper.rs). Ids grow
        // one by one from a random start: the newest id, not the numerically largest.
        l.slots[super::keeper::HIGH_WATER].store(req.id, Ordering::Release);
        if l.idle.fetch_sub(1, Ordering::AcqRel) == 1 {
            spawn_worker(&l);
        }
        let resp = std::panic::catch_unwind(|| handle(l.listener, &req, l.calls))
            .unwrap_or(Answer::Continue);
        send(l.listener, req.id, resp);
        l.slots[slot].store(0, Ordering::Release);
        l.idle.fetch_add(1, Ordering::AcqRel);
    }
}

/// No process is left under the filter.
fn hung_up(listener: c_int) -> bool {
    let mut p = libc::pollfd {
        fd: listener,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd; no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLHUP != 0
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// The kernel runs the call in the program, as made.
    Continue,
    /// We made the call: its return value and errno.
    Done(i64, c_int),
    /// The call is no longer waiting (the thread was killed or interrupted): nothing to send.
    Gone,
}

pub fn send(listener: c_int, id: u64, a: Answer) {
    // SAFETY: plain data.
    let mut resp: seccomp_notif_resp = unsafe { std::mem::zeroed() };
    resp.id = id;
    match a {
        Answer::Gone => return,
        Answer::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        Answer::Done(ret, e) if ret < 0 => resp.error = -e,
        Answer::Done(ret, _) => resp.val = ret,
    }
    // SAFETY: the listener and a response of the ioctl's type. ENOENT: the call went away
    // meanwhile (a signal, the thread killed), which is normal.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
}

/// The call is still waiting: what we read from the program is what it asked (SHAPES §D).
fn still_waiting(listener: c_int, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the listener and a u64.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id) == 0 }
}

/// pidfds by thread id, kept only where a reused id can never name another process's files:
/// a thread's own pidfd (PIDFD_THREAD, 6.9) or a process leader's (its id is reused only
/// once the whole process is gone). A stale one fails with ESRCH and is opened again.
static PIDFDS: Mutex<Option<HashMap<i32, Arc<OwnedFd>>>> = Mutex::new(None);
/// Bounded well below the default limit of 1024 open files.
const PIDFDS_MAX: usize = 256;

fn cached_pidfd(tid: i32) -> Option<Arc<OwnedFd>> {
    let hit = PIDFDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&tid).cloned());
    if hit.is_some() {
        return hit;
    }
    let (fd, cacheable) = pidfd_of(tid)?;
    let fd = Arc::new(fd);
    if cacheable {
        let mut g = PIDFDS.lock().unwrap_or_else(|e| e.into_inner());
        let m = g.get_or_insert_with(HashMap::new);
        if m.len() >= PIDFDS_MAX {
            m.clear();
        }
        m.insert(tid, Arc::clone(&fd));
    }
    Some(fd)
}

fn forget_pidfd(tid: i32) {
    if let Some(m) = PIDFDS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        m.remove(&tid);
    }
}

static DENIED_NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The program's fd `fd`, duplicated into this process for the length of one call.
fn take_fd(tid: i32, fd: c_int) -> Result<OwnedFd, String> {
    for _ in 0..2 {
        let pidfd =
            cached_pidfd(tid).ok_or_else(|| format!("pidfd_open: errno {}", sys::errno()))?;
        // SAFETY: plain system call; the duplicate is ours.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if raw >= 0 {
            // SAFETY: a new fd of ours.
            return Ok(unsafe { OwnedFd::from_raw_fd(raw as c_int) });
        }
        let e = sys::errno();
        if e != libc::ESRCH {
            // Not an fd (EBADF), or we may not take it: the kernel answers the program.
            if e == libc::EPERM && !DENIED_NOTED.swap(true, Ordering::Relaxed) {
                connectx_core::warn!(
                    "cannot take the sockets of pid {tid} (pidfd_getfd: EPERM; ptrace is restricted, \
                     or the program made itself non-dumpable): its calls get the kernel's own \
                     answers (logged once)"
                );
            }
            return Err(format!("pidfd_getfd: errno {e}"));
        }
        // A pidfd of a thread or process that is gone: open it again (once).
        forget_pidfd(tid);
    }
    Err("pidfd_getfd: ESRCH twice".into())
}

/// A pidfd for the process of thread `tid` (pidfd_getfd takes any task of that process), and
/// whether it may be cached under `tid`.
fn pidfd_of(tid: i32) -> Option<(OwnedFd, bool)> {
    let open = |pid: i32, flags: c_int| {
        // SAFETY: plain system call.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) } as c_int;
        // SAFETY: a new fd of ours.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // PIDFD_THREAD (6.9) names a thread; before, only a process leader has a pidfd.
    if let Some(fd) = open(tid, libc::O_EXCL) {
        return Some((fd, true));
    }
    if let Some(fd) = open(tid, 0) {
        add_leader(tid);
        return Some((fd, true));
    }
    // A thread other than its process's first, before 6.9: its process is needed. Not
    // cached: the thread's id may be reused by another process while this one lives.
    open(leader_of(tid)?, 0).map(|fd| (fd, false))
}

/// Processes of the supervised tree seen so far (the program, and every process whose first
/// thread made a trapped call): where to look for the process of another thread.
static LEADERS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
const LEADERS_MAX: usize = 1024;

pub fn add_leader(pid: i32) {
    let mut v = LEADERS.lock().unwrap_or_else(|e| e.into_inner());
    if !v.contains(&pid) {
        if v.len() >= LEADERS_MAX {
            v.remove(0);
        }
        v.push(pid);
    }
}

/// The process of thread `tid`: one of the known processes that has it as a thread
/// (tgkill with signal 0 asks exactly that), else /proc, if /proc is of our pid namespace
/// (a namespace made without mounting its own /proc shows another's).
fn leader_of(tid: i32) -> Option<i32> {
    let known = LEADERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pid in known.into_iter().rev() {
        // SAFETY: signal 0 sends nothing: it only checks that `tid` is a thread of `pid`.
        let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
        if r == 0 || sys::errno() == libc::EPERM {
            return Some(pid);
        }
    }
    let ours = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()?;
    add_leader(tgid);
    Some(tgid)
}

/// The program's address argument, copied once into our memory. None: unreadable or of a
/// length no socket takes (the kernel answers it: EFAULT, EINVAL).
fn read_addr(tid: i32, ptr: u64, len: u64) -> Option<([u8; 128], u32)> {
    if !(2..=128).contains(&len) || ptr == 0 {
        return None;
    }
    let mut buf = [0u8; 128];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len as usize,
    };
    let remote = libc::iovec {
        iov_base: ptr as *mut _,
        iov_len: len as usize,
    };
    // SAFETY: our buffer is len bytes; the remote side is checked by the kernel.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some((buf, len as u32))
}

fn family(buf: &[u8; 128]) -> c_int {
    u16::from_ne_bytes([buf[0], buf[1]]) as c_int
}

fn port(buf: &[u8; 128]) -> u16 {
    u16::from_be_bytes([buf[2], buf[3]])
}

/// The socket's kind for the core's table (TCP/UDP, V6), or None: not a socket we manage.
fn kind(dup: c_int, ty: c_int) -> Option<u32> {
    let get = |name| sys::get_int(dup, libc::SOL_SOCKET, name).ok();
    let fam = match get(libc::SO_DOMAIN)? {
        libc::AF_INET => 0,
        libc::AF_INET6 => V6,
        _ => return None,
    };
    let cfg = connectx_core::config::get().filter(|c| c.enabled)?;
    match (ty, get(libc::SO_PROTOCOL)?) {
        (libc::SOCK_STREAM, libc::IPPROTO_TCP) if cfg.tcp => Some(TCP | fam),
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP) if cfg.udp => Some(UDP | fam),
        _ => None,
    }
}

/// The socket's file is in blocking mode (its status flags are shared by every duplicate).
fn blocking(dup: c_int) -> bool {
    // SAFETY: fcntl on our own duplicate.
    let fl = unsafe { libc::fcntl(dup, libc::F_GETFL) };
    fl >= 0 && fl & libc::O_NONBLOCK == 0
}

/// One trapped call.
pub fn handle(listener: c_int, req: &seccomp_notif, calls: Calls) -> Answer {
    let nr = req.data.nr as libc::c_long;
    let [fd, ptr, len, ..] = req.data.args;
    let tid = req.pid as i32;
    let call = if nr == libc::SYS_bind {
        "bind"
    } else {
        "connect"
    };
    // Every CONTINUE says why at debug (CONNECTX_LOG=debug), as the preload's passes do.
    let pass = |why: &str| {
        connectx_core::debug!("{call}(pid {tid} fd {fd}): the kernel's call: {why} (supervised)");
        Answer::Continue
    };
    let dup = match take_fd(tid, fd as c_int) {
        Ok(dup) => dup,
        Err(e) => return pass(&format!("the socket cannot be taken ({e})")),
    };
    let d = dup.as_raw_fd();
    let Ok(ty) = sys::get_int(d, libc::SOL_SOCKET, libc::SO_TYPE) else {
        return pass("not a socket");
    };
    let Some(cookie) = record::cookie(d) else {
        return pass("no SO_COOKIE");
    };
    if nr == libc::SYS_connect && ty == libc::SOCK_STREAM && !record::known(cookie) {
        // A TCP socket nothing was done to: the kernel shares ports itself. Nothing read, so
        // no ID_VALID needed: a CONTINUE for a call that went away is refused (ENOENT).
        return pass("the kernel shares ports itself (a TCP socket nothing was done to)");
    }
    if nr == libc::SYS_connect
        && ty == libc::SOCK_STREAM
        && record::phase(cookie).is_some_and(|p| p != Phase::Pending && !p.has_port())
        && blocking(d)
    {
        // A deferred bind(ip, 0) on a blocking socket: the kernel picks the port per 4-tuple
        // in the program's own connect (see the blocking case below).
        record::drop_record(cookie);
        return pass("the kernel picks the port per 4-tuple (deferred bind, blocking connect)");
    }
    // Read once: everything below uses this copy, never the program's memory again.
    let Some((buf, len)) = read_addr(tid, ptr, len) else {
        return pass("the address cannot be read (the kernel answers EFAULT or EINVAL)");
    };
    let fam = family(&buf);
    if fam != libc::AF_INET
        && fam != libc::AF_INET6
        && !(nr == libc::SYS_connect && fam == libc::AF_UNSPEC)
    {
        // A unix socket's bind or connect acts in the program's filesystem and credentials.
        return pass("not an IPv4 or IPv6 address");
    }
    if calls == Calls::BindOnly && (ty != libc::SOCK_STREAM || port(&buf) != 0) {
        // Connects are not trapped: a held-back fixed port or a UDP bind deferred to the lock
        // would never be carried out. Only TCP bind(ip, 0) is ours.
        return pass("CONNECTX_SUPERVISE_CALLS=bind serves TCP bind(ip, 0) only");
    }
    if nr == libc::SYS_bind && port(&buf) != 0 && port(&buf) < 1024 {
        // A privileged port is checked against the program's own capabilities.
        return pass("a privileged port");
    }
    // What we read is what the program asked: its thread still waits in this call.
    if !still_waiting(listener, req.id) {
        return Answer::Gone;
    }
    let Some(k) = kind(d, ty) else {
        return pass("not a TCP or UDP socket connectx manages");
    };
    let Some(r) = record::load(d, cookie, k, nr == libc::SYS_connect) else {
        return pass("no record");
    };
    if nr == libc::SYS_connect && r.is_tcp() && !r.is(Phase::Pending) && blocking(d) {
        // A blocking TCP connect runs in the program (CONTINUE), where a signal, an alarm or
        // a cancellation interrupt it as they would without us. What the preload does before
        // it is done here: a deferred bind needs nothing (the kernel picks the port per
        // 4-tuple); a fixed port is opened to other destinations (SO_REUSEADDR). What it does
        // after (a failed connect's port closed again, a port chosen among those bind()
        // reserved when none is left) needs the result: only a non-blocking connect, which
        // the supervisor makes itself (Go's are), gets it.
        if r.has_port()
            && !r.any(CONNECTED)
            && !r.is(Phase::Listening)
            && features::tcp_fixed_sharing()
        {
            let _ = connectx_core::sockopt::set_reuseaddr(d, r, true);
        }
        record::unload(d);
        record::drop_record(cookie);
        return pass("a blocking TCP connect runs in the program");
    }
    let addr = buf.as_ptr().cast::<libc::sockaddr>();
    let verdict = if nr == libc::SYS_bind {
        // SAFETY: our own copy of the address, `len` bytes.
        unsafe { policy::bind(d, addr, len) }
    } else {
        // SAFETY: as above.
        unsafe { policy::connect(d, addr, len) }
    };
    // The preload's hook shape (preload/src/hooks.rs `run`): a `Call` is the program's call,
    // made here on the duplicate with our copy, then the policy's bookkeeping with its
    // result; the call is made at most twice (tcp: a port a bind reserved).
    let mut verdict = verdict;
    let mut made = 0;
    while nr == libc::SYS_connect
        && let Verdict::Call(then) = verdict
    {
        // SAFETY: our own copy of the address; the program's socket through the duplicate.
        let ret = unsafe { real::connect(d, addr, len) } as isize;
        let e = if ret < 0 { sys::errno() } else { 0 };
        made += 1;
        // SAFETY: as above: the address the call just read.
        verdict = match unsafe { policy::after_connect(d, then, ret, e, addr, len) } {
            Verdict::Call(_) | Verdict::Pass(_) if made >= 2 => Verdict::Done(ret, e),
            v => v,
        };
    }
    let answer = match verdict {
        Verdict::Done(ret, e) => Answer::Done(ret as i64, if ret < 0 { e } else { 0 }),
        Verdict::Call(_) => unreachable!("answered by the loop above"),
        Verdict::Pass(why) => {
            connectx_core::debug!("{call}(pid {tid} fd {fd}): passed through: {why} (supervised)");
            // The kernel's own call, made on the program's socket with our copy.
            // SAFETY: our own copy of the address.
            let ret = unsafe {
                if nr == libc::SYS_bind {
                    real::bind(d, addr, len)
                } else {
                    real::connect(d, addr, len)
                }
            };
            Answer::Done(ret as i64, if ret < 0 { sys::errno() } else { 0 })
        }
    };
    let connected_tcp = r.is_tcp()
        && nr == libc::SYS_connect
        && (r.any(connectx_core::state::CONNECTED) || r.is(Phase::Listening));
    if connected_tcp
        || calls == Calls::BindOnly
        || (r.is_tcp()
            && nr == libc::SYS_connect
            && matches!(
                answer,
                Answer::Done(0, _) | Answer::Done(_, libc::EINPROGRESS)
            ))
    {
        // A TCP socket whose connect got going needs nothing more from us (nor does any
        // socket when connects are not trapped).
        record::unload(d);
        record::drop_record(cookie);
    } else {
        record::save(d, cookie, r, tid, fd as c_int);
    }
    answer
}
