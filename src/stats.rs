//! Per-process counters of what connectx did, readable from outside (`connectx stats`,
//! `connectx status`).
//!
//! On the hook path a count is a relaxed load and one relaxed atomic add: no system call, no
//! allocation, no lock.
//!
//! Where the counters live: an anonymous memory file, `memfd_create("connectx-counters",
//! MFD_CLOEXEC)`, mapped MAP_SHARED, made at the first count of the process (a process that
//! counts nothing makes nothing). Its descriptor is kept at a high number like the library's
//! other own fds (ownfd), close-on-exec. Why a memfd and not a file in a directory, as before:
//! - nothing on disk, ever: the kernel frees it with the process's last reference, however the
//!   process ends (_exit, exec of a program without the library, SIGKILL, SIGTERM, a crash).
//!   The old `<dir>/<pid>.stats` files piled up (400 `_exit`ing children left 400 files) and
//!   needed a destructor, a stale-file check, `stats --clean` and a tmpfiles.d entry;
//! - no directory to choose, create or be refused: a `User=` service under a drop-in whose
//!   directory it cannot write, a relative path, `$XDG_RUNTIME_DIR` in one shell and not the
//!   other: every way the counters went missing without a word is gone;
//! - readers find it the way the kernel already arranges access: `/proc/PID/fd/N` reads
//!   `/memfd:connectx-counters (deleted)` and opening it needs the same uid or root
//!   (PTRACE_MODE_READ, no ptrace attach). If the program closed our descriptor (closefrom in a
//!   daemon), root still reads the mapping through `/proc/PID/map_files/` (the mapping stays).
//!
//! The cost: one page of memory per counting process and one descriptor of the high range.
//!
//! A fork child counts from zero in its own memfd, made at its first count. The parent's
//! mapping is shared with the child, so the child must notice that it is a child before it
//! counts: the live state (the pointer to the counters, the state, the counts made before the
//! memfd exists) sits in a private anonymous page marked MADV_WIPEONFORK (Linux 4.14+), which
//! the kernel hands zeroed to the child of *any* fork (also a raw clone without atfork
//! handlers): the child's first count sees no counters and makes its own, after dropping the
//! parent's mapping and descriptor (checked by identity: the number may be the program's now).
//! Without MADV_WIPEONFORK the state lives in static memory, reset by the atfork child handler
//! (a raw clone's child then counts into the parent's memfd: documented in docs/operating.md).
//! vfork children share the parent's memory and exec or _exit at once: nothing to do.
//!
//! CONNECTX_STATS=off (or the older CONNECTX_STATS_DIR=off) disables publishing: counts stay in
//! the process's memory only. CONNECTX_STATS_DIR with any other value is ignored with one warn
//! line (the directory no longer exists). If the memfd cannot be made (seccomp, EMFILE), one
//! warn line says so and names what `connectx stats` will not show.
//!
//! Layout (native endianness, version 1): `CNXSTAT1`, u32 version, u32 pid (as /proc shows
//! it), u64 start time (/proc/PID/stat field 22), 16 bytes program name, u32 number of counters
//! N, u32 offset of the names; u64 counters[N] at offset 64; then N NUL-terminated names. The
//! names travel with the counters, so the reader needs no list of its own.

use crate::sys::KeepErrno;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, Ordering};

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
    /// The trade-off of CONNECTX_BIND_BUSY=share biting: a fixed-port bind that connectx let
    /// through (the kernel said EADDRINUSE) ended in EADDRNOTAVAIL at connect, where the
    /// program would have seen the bind fail and tried another port (`bind_busy_bites`).
    TcpSharedFixedRefused,
    /// The same trade-off for UDP: a bind(ip, 0) deferred because no port was free, then an
    /// unconnected send from it (no port to share: EADDRINUSE, the bind's own error, late).
    UdpDeferredSendRefused,
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
    "tcp.shared_fixed_port_refused",
    "udp.deferred_send_refused",
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
pub const N: usize = 14;

/// Counts `e`: a relaxed load and one relaxed atomic add once the memfd exists (safe in a
/// signal handler, after fork). The first count of a process makes the memfd (cold).
#[inline]
pub fn count(e: Event) {
    let live = live();
    let c = live.counters.load(Ordering::Relaxed);
    if !c.is_null() {
        // SAFETY: a published pointer is N live counters in a mapping never unmapped while
        // published (a fork child sees null: the wiped page, or the atfork reset).
        unsafe { (*c.add(e as usize)).fetch_add(1, Ordering::Relaxed) };
        return;
    }
    slow_count(live, e);
}

/// The value of a counter in this process (tests, logging).
pub fn get(e: Event) -> u64 {
    let live = live();
    let c = live.counters.load(Ordering::Acquire);
    let local = live.local[e as usize].load(Ordering::Relaxed);
    if c.is_null() {
        return local;
    }
    // SAFETY: as in `count`.
    local + unsafe { (*c.add(e as usize)).load(Ordering::Relaxed) }
}

/// What a fork child must not inherit: in a MADV_WIPEONFORK page where the kernel offers one.
#[repr(C)]
struct Live {
    /// The memfd's counters, null until published.
    counters: AtomicPtr<AtomicU64>,
    state: AtomicU8,
    /// Counts made before the memfd exists (or when it cannot be made, or is disabled).
    local: [AtomicU64; N],
}

// The memfd's state in this process: not tried yet, being made (by one thread), published, or
// not to be made.
const UNTRIED: u8 = 0;
const MAKING: u8 = 1;
const MAPPED: u8 = 2;
const NONE: u8 = 3;

static STATIC_LIVE: Live = Live {
    counters: AtomicPtr::new(std::ptr::null_mut()),
    state: AtomicU8::new(UNTRIED),
    local: [const { AtomicU64::new(0) }; N],
};
/// The wiped-on-fork page, once `configure` made it; STATIC_LIVE before or without it.
static LIVE: AtomicPtr<Live> = AtomicPtr::new(std::ptr::null_mut());
/// The page is wiped on fork by the kernel (else the atfork handler resets STATIC_LIVE).
static WIPED: AtomicBool = AtomicBool::new(false);

#[inline]
fn live() -> &'static Live {
    let p = LIVE.load(Ordering::Relaxed);
    if p.is_null() {
        &STATIC_LIVE
    } else {
        // SAFETY: a page of ours, mapped once at load and never unmapped.
        unsafe { &*p }
    }
}

const HEADER: usize = 64;
const SIZE: usize = 4096;
const MAGIC: &[u8; 8] = b"CNXSTAT1";
/// The memfd's name; readers look for `/memfd:connectx-counters (deleted)`.
pub const MEMFD_NAME: &std::ffi::CStr = c"connectx-counters";

/// Publishing disabled (CONNECTX_STATS=off): counts stay in `local`.
static DISABLED: AtomicBool = AtomicBool::new(false);
/// The memfd this process (or, in a fork child, its parent) made: mapping, number, identity.
/// Plain statics on purpose: a child inherits them and so knows what to drop.
static MAP: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static FD: AtomicI32 = AtomicI32::new(-1);
static FD_DEV: AtomicU64 = AtomicU64::new(0);
static FD_INO: AtomicU64 = AtomicU64::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

/// At load, from the environment: whether to publish, and the wiped-on-fork page (two system
/// calls, once per process image).
pub fn configure(getenv: impl Fn(&'static str) -> Option<&'static [u8]>) {
    let off = |v: &[u8]| matches!(v, b"off" | b"0" | b"no" | b"false");
    let mut disabled = false;
    if let Some(v) = getenv("CONNECTX_STATS").filter(|v| !v.is_empty()) {
        match v {
            b"on" | b"1" | b"yes" | b"true" => {}
            v if off(v) => disabled = true,
            v => crate::log::write_line(
                crate::config::Level::Warn,
                format_args!(
                    "CONNECTX_STATS={} is not valid (accepted: on, off); using on",
                    String::from_utf8_lossy(v)
                ),
            ),
        }
    }
    if let Some(v) = getenv("CONNECTX_STATS_DIR").filter(|v| !v.is_empty()) {
        if off(v) {
            disabled = true;
        } else {
            crate::log::write_line(
                crate::config::Level::Warn,
                format_args!(
                    "CONNECTX_STATS_DIR={} is ignored: counters live in memory, read through \
                     /proc by `connectx stats` (accepted: off, or CONNECTX_STATS=on|off)",
                    String::from_utf8_lossy(v)
                ),
            );
        }
    }
    DISABLED.store(disabled, Ordering::Relaxed);
    if LIVE.load(Ordering::Relaxed).is_null() {
        // SAFETY: a fresh private anonymous page of ours; madvise on it.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p != libc::MAP_FAILED {
                if libc::madvise(p, SIZE, libc::MADV_WIPEONFORK) == 0 {
                    let page = p.cast::<Live>();
                    // Counts made before load finished (hooks before our constructor).
                    for (i, c) in STATIC_LIVE.local.iter().enumerate() {
                        (*page).local[i].store(c.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                    }
                    LIVE.store(page, Ordering::Release);
                    WIPED.store(true, Ordering::Relaxed);
                } else {
                    libc::munmap(p, SIZE);
                }
            }
        }
    }
}

#[cold]
fn slow_count(live: &Live, e: Event) {
    let slot = &live.local[e as usize];
    slot.fetch_add(1, Ordering::SeqCst);
    if live.state.load(Ordering::SeqCst) == UNTRIED
        && live
            .state
            .compare_exchange(UNTRIED, MAKING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        let _keep = KeepErrno::new();
        drop_inherited();
        // SAFETY: only this thread is MAKING; plain system calls on our own fd and mapping.
        let made = if DISABLED.load(Ordering::Relaxed) {
            None
        } else {
            unsafe { make() }
        };
        match made {
            Some(c) => {
                live.counters.store(c, Ordering::SeqCst);
                live.state.store(MAPPED, Ordering::SeqCst);
                // What was counted before: each unit moves once (swap), whoever moves it.
                for (i, l) in live.local.iter().enumerate() {
                    let v = l.swap(0, Ordering::SeqCst);
                    if v != 0 {
                        // SAFETY: i < N counters in the mapping.
                        unsafe { (*c.add(i)).fetch_add(v, Ordering::Relaxed) };
                    }
                }
            }
            None => live.state.store(NONE, Ordering::SeqCst),
        }
        return;
    }
    // Another thread is making it: if it published meanwhile, move our unit (it may have
    // swapped `local` before our add).
    let c = live.counters.load(Ordering::SeqCst);
    if !c.is_null() {
        let v = slot.swap(0, Ordering::SeqCst);
        if v != 0 {
            // SAFETY: as in `count`.
            unsafe { (*c.add(e as usize)).fetch_add(v, Ordering::Relaxed) };
        }
    }
}

/// A fork child's first count (or its atfork handler): the parent's mapping and descriptor are
/// not ours to count into or to keep. The descriptor is closed only if it still is that memfd.
fn drop_inherited() {
    let p = MAP.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: our own mapping of SIZE bytes, published nowhere in this process any more.
        unsafe { libc::munmap(p.cast(), SIZE) };
    }
    let fd = FD.swap(-1, Ordering::SeqCst);
    if fd >= 0
        && crate::ownfd::file_ident(fd)
            == Some((
                FD_DEV.load(Ordering::Relaxed),
                FD_INO.load(Ordering::Relaxed),
            ))
    {
        crate::sys::close(fd);
    }
}

/// Makes, maps and fills the memfd; the pointer to its counters. One warn line if it cannot.
unsafe fn make() -> Option<*mut AtomicU64> {
    let fail = |what: &str| {
        let e = crate::sys::errno();
        crate::log::once(
            &WARNED,
            crate::config::Level::Warn,
            format_args!(
                "counters not published ({what}: errno {e}): `connectx stats` and `status` \
                 will not show this process's counters (they go on in its memory)"
            ),
        );
        None
    };
    // A fork meanwhile must see the fd recorded (ownfd's fork gate).
    let _opening = crate::ownfd::Opening::enter();
    // SAFETY: plain system calls on our own new descriptor and mapping.
    unsafe {
        let fd = libc::memfd_create(MEMFD_NAME.as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return fail("memfd_create");
        }
        if libc::ftruncate(fd, SIZE as libc::off_t) != 0 {
            let r = fail("ftruncate");
            crate::sys::close(fd);
            return r;
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if p == libc::MAP_FAILED {
            let r = fail("mmap");
            crate::sys::close(fd);
            return r;
        }
        let fd = crate::ownfd::move_high(fd);
        let (dev, ino) = crate::ownfd::file_ident(fd).unwrap_or((0, 0));
        FD_DEV.store(dev, Ordering::Relaxed);
        FD_INO.store(ino, Ordering::Relaxed);
        FD.store(fd, Ordering::SeqCst);
        let p = p.cast::<u8>();
        MAP.store(p, Ordering::SeqCst);
        let names_at = HEADER + 8 * N;
        let h = std::slice::from_raw_parts_mut(p, SIZE);
        h[8..12].copy_from_slice(&1u32.to_ne_bytes());
        h[12..16].copy_from_slice(&(proc_pid() as u32).to_ne_bytes());
        h[16..24].copy_from_slice(&start_time().to_ne_bytes());
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
        Some(p.wrapping_add(HEADER).cast::<AtomicU64>())
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

/// This process's pid as /proc shows it (readlink /proc/self): what the reader compares with.
/// In a PID namespace whose /proc is the parent's, that is not getpid().
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

/// The child of fork (atfork handler; only async-signal-safe calls): counts from zero, the
/// parent's memfd dropped now; the child's own is made at its first count.
pub fn after_fork_in_child() {
    if !WIPED.load(Ordering::Relaxed) {
        let live = &STATIC_LIVE;
        live.counters.store(std::ptr::null_mut(), Ordering::Relaxed);
        live.state.store(UNTRIED, Ordering::Relaxed);
        for c in &live.local {
            c.store(0, Ordering::Relaxed);
        }
    }
    drop_inherited();
}

/// Events an operator wants to hear about once: the first fallback of each kind.
static FIRST: [AtomicBool; N] = [const { AtomicBool::new(false) }; N];

/// Counts `e` and, the first time in this process, logs `what` at info.
pub fn count_and_note(e: Event, what: std::fmt::Arguments<'_>) {
    count(e);
    crate::log::once(&FIRST[e as usize], crate::config::Level::Info, what);
}

static BIND_BUSY_WARNED: AtomicBool = AtomicBool::new(false);

/// A shared fixed port's connect refused (EADDRNOTAVAIL): counted, and the first time in the
/// process one warn line names the call, the port, the destination and the way out, because
/// this is where CONNECTX_BIND_BUSY=share costs a program that walks a port range on bind
/// errors (curl --local-port A-B): it never sees the bind fail, so it never tries the next port.
pub fn bind_busy_bites(
    call: &str,
    fd: i32,
    src: &crate::addr::SockAddr,
    dst: &crate::addr::SockAddr,
) {
    count(Event::TcpSharedFixedRefused);
    crate::log::once(
        &BIND_BUSY_WARNED,
        crate::config::Level::Warn,
        format_args!(
            "{call}(fd {fd}) from {src} to {dst}: EADDRNOTAVAIL: port {} was shared at bind (the \
             kernel had said EADDRINUSE) and its 4-tuple to that destination is taken; a program \
             that tries other ports on bind errors needs CONNECTX_BIND_BUSY=kernel (`connectx \
             run --bind-busy kernel`); logged once, counted in tcp.shared_fixed_port_refused",
            src.port()
        ),
    );
}

static UDP_BIND_BUSY_WARNED: AtomicBool = AtomicBool::new(false);

/// A deferred UDP bind(ip, 0) met an unconnected send (EADDRINUSE): counted, and one warn line
/// the first time in the process (dnsmasq `--server=IP@SRC` falls back to a socket it has when
/// its bind fails, which it can no longer do once the bind succeeded).
pub fn udp_bind_busy_bites(fd: i32, src: Option<&crate::addr::SockAddr>) {
    count(Event::UdpDeferredSendRefused);
    let src = src.map(Ip);
    crate::log::once(
        &UDP_BIND_BUSY_WARNED,
        crate::config::Level::Warn,
        format_args!(
            "send(fd {fd}) from {}: EADDRINUSE: its bind(ip, 0) was deferred (the kernel had no \
             free port) and an unconnected send cannot share one; a program that falls back on \
             bind errors needs CONNECTX_BIND_BUSY=kernel (`connectx run --bind-busy kernel`); \
             logged once, counted in udp.deferred_send_refused",
            OrAny(src)
        ),
    );
}

/// An optional address in a log line.
struct OrAny<'a>(Option<Ip<'a>>);

impl std::fmt::Display for OrAny<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("its address"),
        }
    }
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
