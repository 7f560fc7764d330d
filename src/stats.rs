//! Per-process counters of what connectx did, readable from outside (`connectx stats`).
//!
//! On the hook path a count is one relaxed atomic add: no system call, no allocation, no lock.
//! The counters live in a small file per process, `<dir>/<pid>.stats`, created and
//! mapped (MAP_SHARED) once, at the first socket connectx manages; its fd is closed right after
//! mmap, so the program's fd numbers never shift. Before that (and where no file can be made)
//! the counts go to an array in our own memory. Directory, in order: `CONNECTX_STATS_DIR` (`off`
//! disables the file), `$XDG_RUNTIME_DIR/connectx`, `/run/connectx` for root, else
//! `/tmp/connectx-<euid>` (0700, ours, not a symlink). The pid is the one /proc shows (where
//! the reader looks it up); processes with different /proc mounts must not share a directory
//! (containers have their own /run).
//!
//! Lifetime: removed at exit (a destructor); a process killed before it leaves its file behind,
//! recognisable as stale: the header holds the pid and the process start time
//! (/proc/self/stat field 22), which `connectx stats` compares with the live process (and
//! `connectx stats --clean` removes).
//! A child of fork gets its own file (the mapping is the parent's); an exec'd image removes its
//! pid's file at load and makes a new one at its first managed socket.
//!
//! File layout (native endianness, version 1): `CNXSTAT1`, u32 version, u32 pid, u64 start
//! time, 16 bytes program name, u32 number of counters N, u32 offset of the names; u64
//! counters[N] at offset 64; then N NUL-terminated names. The names travel in the file, so
//! the reader needs no list of its own and new events need no change to the command.

use crate::sys::KeepErrno;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};

/// What connectx did. The name (`NAMES`) is what `connectx stats` shows.
///
/// The UDP call sites (udp/lock.rs, udp/mod.rs, policy::share_fixed) count:
/// - `UdpLockConnect`: a connect the kernel refused (EAGAIN) that the lock then completed on a
///   port shared per 4-tuple;
/// - `UdpSharedFixedPort`: bind(ip, P) refused with EADDRINUSE, let through because every
///   holder is a connected flow;
/// - `UdpRaceLost`: the lock's exact lookup found another socket on the 4-tuple (undone, next
///   port);
/// - `UdpEagain`: the lock gave up (every port taken, or too many lost races): EAGAIN to the
///   program, as the kernel says; also call `exhausted` for the source address;
/// - `UdpNoDiag`: SOCK_DIAG is forbidden (once), or did not answer for one connect (EAGAIN).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum Event {
    /// TCP bind(ip, P) refused by the kernel (EADDRINUSE), let through: the port is shared with
    /// outgoing connections to other destinations.
    TcpSharedFixedPort,
    /// TCP connect of a socket whose bind(ip, 0) connectx deferred: the kernel chose the port
    /// per 4-tuple (where the kernel's own bind would have failed, once bind is kernel first).
    TcpPerTupleConnect,
    /// TCP connect of a deferred socket refused with EADDRNOTAVAIL: no 4-tuple left to that
    /// destination (exhaustion even with connectx).
    TcpExhausted,
    UdpLockConnect,
    UdpSharedFixedPort,
    UdpRaceLost,
    UdpEagain,
    UdpNoDiag,
    /// Fallbacks to the kernel's behaviour, by reason (decision::Pass).
    FallbackLockUnavailable,
    FallbackNoRoute,
    FallbackInternalError,
    /// A panic in our code, caught at the hook (the real call was made or its answer returned).
    Panic,
}

pub const NAMES: [&str; N] = [
    "tcp.shared_fixed_port",
    "tcp.per_tuple_connect",
    "tcp.exhausted",
    "udp.lock_connect",
    "udp.shared_fixed_port",
    "udp.race_lost",
    "udp.eagain",
    "udp.no_sock_diag",
    "fallback.lock_unavailable",
    "fallback.no_route",
    "fallback.internal_error",
    "fallback.panic",
];
pub const N: usize = 12;

/// Counts `e`: one relaxed atomic add, nothing else (safe in a signal handler, after fork).
#[inline]
pub fn count(e: Event) {
    let p = COUNTERS.load(Ordering::Relaxed);
    // SAFETY: COUNTERS points at N live counters: LOCAL, or the mapping, which is never unmapped
    // while it is published (after fork the child switches back to LOCAL first).
    unsafe { (*p.add(e as usize)).fetch_add(1, Ordering::Relaxed) };
}

/// The value of a counter in this process (tests, logging).
pub fn get(e: Event) -> u64 {
    // SAFETY: as in `count`.
    unsafe { (*COUNTERS.load(Ordering::Relaxed).add(e as usize)).load(Ordering::Relaxed) }
}

static LOCAL: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static COUNTERS: AtomicPtr<AtomicU64> = AtomicPtr::new(LOCAL.as_ptr().cast_mut());

const HEADER: usize = 64;
const SIZE: usize = 4096;
const MAGIC: &[u8; 8] = b"CNXSTAT1";

// The file's state: not tried yet, being made (by one thread), mapped, or not to be made.
const UNTRIED: u8 = 0;
const MAKING: u8 = 1;
const MAPPED: u8 = 2;
const NONE: u8 = 3;
static STATE: AtomicU8 = AtomicU8::new(UNTRIED);
static MAP: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
/// The directory is the shared-/tmp fallback: made 0700 and checked to be ours.
static PRIVATE: AtomicBool = AtomicBool::new(false);
static OWNER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The file's path, set at load from the environment (no allocation: a fixed buffer).
struct PathBuf {
    buf: [u8; 256],
    len: usize,
}
static mut DIR: PathBuf = PathBuf {
    buf: [0; 256],
    len: 0,
};
static mut NAME: PathBuf = PathBuf {
    buf: [0; 256],
    len: 0,
};

impl PathBuf {
    fn push(&mut self, s: &[u8]) -> bool {
        if self.len + s.len() >= self.buf.len() {
            return false;
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        self.buf[self.len] = 0;
        true
    }
    fn push_num(&mut self, mut n: u64) -> bool {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&d[i..])
    }
    fn cstr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }
}

/// Where the files go, from the environment (read once, at load, before any hook runs).
pub fn configure(getenv: impl Fn(&'static str) -> Option<&'static [u8]>) {
    // SAFETY: called once from the library's init, before any hook can read DIR.
    let dir = unsafe { &mut *std::ptr::addr_of_mut!(DIR) };
    dir.len = 0;
    let ok = match getenv("CONNECTX_STATS_DIR").filter(|v| !v.is_empty()) {
        Some(b"off" | b"0" | b"no" | b"false") => false,
        Some(v) if v.starts_with(b"/") => dir.push(v),
        Some(_) => false, // relative: ambiguous once the program changes directory
        None => match getenv("XDG_RUNTIME_DIR").filter(|v| v.starts_with(b"/")) {
            Some(v) => dir.push(v) && dir.push(b"/connectx"),
            // SAFETY: no preconditions.
            None if unsafe { libc::geteuid() } == 0 => dir.push(b"/run/connectx"),
            None => {
                PRIVATE.store(true, Ordering::Relaxed);
                dir.push(b"/tmp/connectx-") && dir.push_num(unsafe { libc::geteuid() } as u64)
            }
        },
    };
    if !ok {
        dir.len = 0;
        STATE.store(NONE, Ordering::Relaxed);
    }
}

/// The first socket connectx manages: make and map the file (once per process).
#[inline]
pub fn touch() {
    if STATE.load(Ordering::Relaxed) == UNTRIED {
        make();
    }
}

#[cold]
fn make() {
    if STATE
        .compare_exchange(UNTRIED, MAKING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let _keep = KeepErrno::new();
    // SAFETY: only this thread writes NAME (MAKING), plain system calls on our own fds.
    let mapped = unsafe { open_and_map() };
    match mapped {
        Some(p) => {
            MAP.store(p, Ordering::Release);
            let counters = p.wrapping_add(HEADER).cast::<AtomicU64>();
            COUNTERS.store(counters, Ordering::Release);
            // What was counted before the file existed.
            for (i, c) in LOCAL.iter().enumerate() {
                let v = c.swap(0, Ordering::Relaxed);
                if v != 0 {
                    // SAFETY: i < N counters in the mapping.
                    unsafe { (*counters.add(i)).fetch_add(v, Ordering::Relaxed) };
                }
            }
            STATE.store(MAPPED, Ordering::Release);
        }
        None => STATE.store(NONE, Ordering::Release),
    }
}

unsafe fn open_and_map() -> Option<*mut u8> {
    // SAFETY: DIR is written only at init.
    let dir = unsafe { &*std::ptr::addr_of!(DIR) };
    if dir.len == 0 {
        return None;
    }
    let private = PRIVATE.load(Ordering::Relaxed);
    // SAFETY: NUL-terminated paths; plain system calls (none of them hooked).
    unsafe {
        libc::mkdir(dir.cstr(), if private { 0o700 } else { 0o755 });
        if private {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::lstat(dir.cstr(), &mut st) != 0
                || st.st_mode & libc::S_IFMT != libc::S_IFDIR
                || st.st_uid != libc::geteuid()
                || st.st_mode & 0o077 != 0
            {
                return None;
            }
        }
        let pid = proc_pid();
        let name = &mut *std::ptr::addr_of_mut!(NAME);
        name.len = 0;
        if !(name.push(&dir.buf[..dir.len])
            && name.push(b"/")
            && name.push_num(pid as u64)
            && name.push(b".stats"))
        {
            return None;
        }
        let start = start_time();
        let fd = libc::open(
            name.cstr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
            0o644 as libc::c_uint,
        );
        if fd < 0 {
            return None;
        }
        // Zeroed afresh: after exec the same pid starts over.
        let ok = libc::ftruncate(fd, 0) == 0 && libc::ftruncate(fd, SIZE as libc::off_t) == 0;
        let p = if ok {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        } else {
            libc::MAP_FAILED
        };
        crate::sys::close(fd);
        if p == libc::MAP_FAILED {
            libc::unlink(name.cstr());
            return None;
        }
        let p = p.cast::<u8>();
        let names_at = HEADER + 8 * N;
        let h = std::slice::from_raw_parts_mut(p, SIZE);
        h[8..12].copy_from_slice(&1u32.to_ne_bytes());
        h[12..16].copy_from_slice(&(pid as u32).to_ne_bytes());
        h[16..24].copy_from_slice(&start.to_ne_bytes());
        let comm = program_name();
        let n = comm.len().min(15);
        h[24..24 + n].copy_from_slice(&comm[..n]);
        h[40..44].copy_from_slice(&(N as u32).to_ne_bytes());
        h[44..48].copy_from_slice(&(names_at as u32).to_ne_bytes());
        let mut at = names_at;
        for name in NAMES {
            h[at..at + name.len()].copy_from_slice(name.as_bytes());
            at += name.len() + 1;
        }
        // The magic last: a reader that sees it sees a complete header.
        std::sync::atomic::fence(Ordering::Release);
        h[..8].copy_from_slice(MAGIC);
        OWNER.store(libc::getpid(), Ordering::Relaxed);
        Some(p)
    }
}

unsafe extern "C" {
    static program_invocation_short_name: *const libc::c_char;
}

fn program_name() -> &'static [u8] {
    // SAFETY: glibc sets it before any constructor runs; a NUL-terminated string or NULL.
    unsafe {
        let p = program_invocation_short_name;
        if p.is_null() {
            b"?"
        } else {
            std::ffi::CStr::from_ptr(p).to_bytes()
        }
    }
}

/// This process's pid as /proc shows it (readlink /proc/self): the reader finds the process
/// there. In a PID namespace whose /proc is the parent's, that is not getpid().
unsafe fn proc_pid() -> i32 {
    let mut buf = [0u8; 16];
    // SAFETY: our own buffer, NUL-terminated path.
    let n = unsafe { libc::readlink(c"/proc/self".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let parsed = (n > 0)
        .then(|| {
            std::str::from_utf8(&buf[..n as usize])
                .ok()?
                .parse::<i32>()
                .ok()
        })
        .flatten();
    // SAFETY: no preconditions.
    parsed.unwrap_or_else(|| unsafe { libc::getpid() })
}

/// Field 22 of /proc/self/stat: the start time in clock ticks since boot (0 if unreadable).
unsafe fn start_time() -> u64 {
    let mut buf = [0u8; 1024];
    // SAFETY: plain system calls on our own fd and buffer.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        crate::sys::close(fd);
        n
    };
    if n <= 0 {
        return 0;
    }
    parse_start_time(&buf[..n as usize])
}

/// The start time from the text of /proc/PID/stat: field 22, counted after the `)` that ends
/// the program name (which may itself hold spaces and parentheses).
pub fn parse_start_time(stat: &[u8]) -> u64 {
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return 0;
    };
    // After ") ": field 3 (state) is the first; field 22 is the 20th.
    stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .nth(19)
        .and_then(|w| std::str::from_utf8(w).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The child of fork: the mapping is the parent's file. Count from zero in the child's own
/// file, made now if the parent had one (a daemon or a prefork worker keeps its counters
/// visible; only async-signal-safe system calls), else at its first managed socket.
pub fn after_fork_in_child() {
    COUNTERS.store(LOCAL.as_ptr().cast_mut(), Ordering::Relaxed);
    for c in &LOCAL {
        c.store(0, Ordering::Relaxed);
    }
    let p = MAP.swap(std::ptr::null_mut(), Ordering::Relaxed);
    if !p.is_null() {
        // SAFETY: our own mapping of SIZE bytes, no longer published.
        unsafe { libc::munmap(p.cast(), SIZE) };
    }
    OWNER.store(0, Ordering::Relaxed);
    let had = STATE.load(Ordering::Relaxed) == MAPPED;
    if STATE.load(Ordering::Relaxed) != NONE {
        STATE.store(UNTRIED, Ordering::Relaxed);
    }
    if had {
        make();
    }
}

/// At load: a file under our pid is stale (an earlier process with this pid that was killed)
/// or our own image's before exec (same pid, same start time): either way not ours to show.
/// Two system calls at start (readlink, unlink), none later.
pub fn forget_previous() {
    // SAFETY: DIR is written only by `configure`, before this.
    let dir = unsafe { &*std::ptr::addr_of!(DIR) };
    if dir.len == 0 {
        return;
    }
    let _keep = KeepErrno::new();
    let mut p = PathBuf {
        buf: [0; 256],
        len: 0,
    };
    // SAFETY: plain system calls.
    let pid = unsafe { proc_pid() };
    if p.push(&dir.buf[..dir.len]) && p.push(b"/") && p.push_num(pid as u64) && p.push(b".stats") {
        // SAFETY: NUL-terminated path.
        unsafe { libc::unlink(p.cstr()) };
    }
}

/// At exit: the file goes (only the process that made it removes it).
pub fn at_exit() {
    // SAFETY: getpid has no preconditions.
    if OWNER.load(Ordering::Relaxed) != 0
        && OWNER.load(Ordering::Relaxed) == unsafe { libc::getpid() }
    {
        // SAFETY: NAME was completed before OWNER was set.
        unsafe { libc::unlink((*std::ptr::addr_of!(NAME)).cstr()) };
    }
}

/// Events an operator wants to hear about once: the first fallback of each kind.
static FIRST: [AtomicBool; N] = [const { AtomicBool::new(false) }; N];

/// Counts `e` and, the first time in this process, logs `what` at info.
pub fn count_and_note(e: Event, what: std::fmt::Arguments<'_>) {
    count(e);
    crate::log::once(&FIRST[e as usize], crate::config::Level::Info, what);
}

/// An address without its port, for log lines (no allocation).
struct Ip<'a>(&'a crate::addr::SockAddr);

impl std::fmt::Display for Ip<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            crate::addr::SockAddr::V4 { ip, .. } => std::net::Ipv4Addr::from(*ip).fmt(f),
            crate::addr::SockAddr::V6 { ip, .. } => std::net::Ipv6Addr::from(*ip).fmt(f),
        }
    }
}

/// Source addresses already reported as exhausted (a hash per protocol and address).
const SOURCES: usize = 32;
static EXHAUSTED: [AtomicU64; SOURCES] = [const { AtomicU64::new(0) }; SOURCES];
static EXHAUSTED_FULL: AtomicBool = AtomicBool::new(false);

/// Counts `e` (an exhaustion) and logs the first one for each source address at info; past
/// 32 sources, one line says that further ones are not logged (the counters go on).
pub fn exhausted(
    e: Event,
    proto: &str,
    src: &crate::addr::SockAddr,
    dst: Option<&crate::addr::SockAddr>,
) {
    count(e);
    if !crate::log::enabled(crate::config::Level::Info) {
        return;
    }
    let w = src.with_port(0).to_words();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ proto.len() as u64;
    for x in w {
        h = (h ^ x).wrapping_mul(0x100_0000_01b3);
    }
    let h = h | 1; // never 0 (empty slot)
    for slot in &EXHAUSTED {
        match slot.compare_exchange(0, h, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                let src = Ip(src);
                match dst {
                    Some(d) => crate::info!(
                        "{proto} source {src} ran out of ports towards {d}: the program got the \
                         kernel's error (logged once per source address)"
                    ),
                    None => crate::info!(
                        "{proto} source {src} ran out of ports to a destination: the program \
                         got the kernel's error (logged once per source address)"
                    ),
                }
                return;
            }
            Err(v) if v == h => return,
            Err(_) => {}
        }
    }
    crate::log::once(
        &EXHAUSTED_FULL,
        crate::config::Level::Info,
        format_args!("more than {SOURCES} source addresses ran out of ports: no more such lines"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_events() {
        assert_eq!(NAMES.len(), Event::Panic as usize + 1);
        assert!(HEADER + 8 * N + NAMES.iter().map(|n| n.len() + 1).sum::<usize>() <= SIZE);
    }

    #[test]
    fn start_time_is_field_22() {
        let stat = b"4242 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_start_time(stat), 777);
        assert_eq!(parse_start_time(b"garbage"), 0);
    }

    #[test]
    fn counts_go_to_local_memory_before_the_file() {
        let before = get(Event::FallbackNoRoute);
        count(Event::FallbackNoRoute);
        assert_eq!(get(Event::FallbackNoRoute), before + 1);
    }
}
