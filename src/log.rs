//! Logging with one write(2) of a stack buffer per line: no allocation, no lock, safe after fork
//! and never on the program's stdout (PITFALLS 14). Lines carry the program name and pid.
//!
//! CONNECTX_LOG_FILE is checked at load (so a bad path gets its warning at once) but kept open
//! only from the first line due: loading the library moves none of the program's fd numbers.
//! Its fd lives high (ownfd), and its identity (device, inode) is checked before every line, so a
//! number the program took over never receives our lines.

use crate::config::{self, Level};
use crate::ownfd;
use libc::c_int;
use std::cell::UnsafeCell;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Where lines go: stderr unless the log file is open.
static FD: AtomicI32 = AtomicI32::new(2);

/// No log file: stderr.
const NONE: u8 = 0;
/// CONNECTX_LOG_FILE checked at load, opened when the first line is due.
const PENDING: u8 = 1;
const OPENING: u8 = 2;
const OPEN: u8 = 3;
/// The program closed the log file's number, or it could no longer be opened: stderr.
const GONE: u8 = 4;
static STATE: AtomicU8 = AtomicU8::new(NONE);
/// The open log file's identity.
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);

/// CONNECTX_LOG_FILE, copied at load (a program may overwrite its environment strings, as
/// setproctitle does). Written once, before STATE leaves NONE.
struct PathBuf(UnsafeCell<[u8; 4096]>);
// SAFETY: written only by `configure`, before any reader can see STATE != NONE (Release/Acquire).
unsafe impl Sync for PathBuf {}
static PATH: PathBuf = PathBuf(UnsafeCell::new([0; 4096]));
static PATH_LEN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" {
    static program_invocation_short_name: *const libc::c_char;
}

struct Line {
    buf: [u8; 600],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        // Leave one byte for the newline; cut long lines rather than fail.
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[inline]
pub fn enabled(level: Level) -> bool {
    (level as u32) <= config::log_level()
}

/// Writes one line if `level` is enabled. Keeps errno.
pub fn line(level: Level, args: std::fmt::Arguments<'_>) {
    if enabled(level) {
        write_line(level, args)
    }
}

/// Writes one line whatever the level (configuration problems).
pub fn write_line(level: Level, args: std::fmt::Arguments<'_>) {
    let _keep = crate::sys::KeepErrno::new();
    let mut l = Line {
        buf: [0; 600],
        len: 0,
    };
    // SAFETY: glibc sets program_invocation_short_name before any constructor runs; it is a
    // NUL-terminated string or NULL.
    let name = unsafe {
        let p = program_invocation_short_name;
        if p.is_null() {
            &b"?"[..]
        } else {
            std::ffi::CStr::from_ptr(p).to_bytes()
        }
    };
    let _ = write!(
        l,
        "connectx[{}:{}] {}: ",
        std::str::from_utf8(name).unwrap_or("?"),
        // SAFETY: getpid has no preconditions (and is not hooked).
        unsafe { libc::getpid() },
        level.name()
    );
    let _ = l.write_fmt(args);
    l.buf[l.len] = b'\n';
    let fd = target();
    // SAFETY: buf holds len + 1 initialised bytes; write is not hooked.
    unsafe { libc::write(fd, l.buf.as_ptr().cast(), l.len + 1) };
}

/// The fd for the next line: the log file (opened now if this is the first line), if its
/// number is still the file we opened; else stderr.
fn target() -> c_int {
    for _ in 0..1000 {
        match STATE.load(Ordering::Acquire) {
            PENDING => open_now(),
            OPEN => {
                let fd = FD.load(Ordering::Acquire);
                if ownfd::file_ident(fd)
                    == Some((DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed)))
                {
                    return fd;
                }
                // Closed behind our back (raw close, closefrom) and maybe reused.
                forget_fd(fd);
                return 2;
            }
            // Another thread is opening it (or this one, interrupted by a signal: bounded).
            OPENING => {
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
            _ => return 2,
        }
    }
    2
}

/// First line due: open the log file (inside the fork gate, so a child never inherits a
/// half-opened one).
fn open_now() {
    let _gate = ownfd::Opening::enter();
    if STATE
        .compare_exchange(PENDING, OPENING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    match open_file() {
        Ok(fd) => install(fd),
        Err(e) => {
            STATE.store(GONE, Ordering::Release);
            drop(_gate);
            write_line(
                Level::Warn,
                format_args!(
                    "CONNECTX_LOG_FILE={} cannot be opened any more (errno {e}); logging to stderr",
                    // No allocation here (a hook path): a path that is not UTF-8 is not shown.
                    std::str::from_utf8(path()).unwrap_or("(not UTF-8)")
                ),
            );
        }
    }
}

fn install(fd: c_int) {
    let (dev, ino) = ownfd::file_ident(fd).unwrap_or((0, 0));
    DEV.store(dev, Ordering::Relaxed);
    INO.store(ino, Ordering::Relaxed);
    FD.store(fd, Ordering::Release);
    STATE.store(OPEN, Ordering::Release);
}

fn path() -> &'static [u8] {
    let n = PATH_LEN.load(Ordering::Acquire);
    // SAFETY: PATH is written only before PATH_LEN is stored (configure), then only read.
    unsafe { &(&*PATH.0.get())[..n] }
}

/// Logs a line only the first time `flag` is seen (one message per kind of fallback).
pub fn once(flag: &AtomicBool, level: Level, args: std::fmt::Arguments<'_>) {
    if !flag.swap(true, Ordering::Relaxed) {
        line(level, args)
    }
}

#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::line($crate::config::Level::Debug, format_args!($($t)*)) } }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::line($crate::config::Level::Info, format_args!($($t)*)) } }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::line($crate::config::Level::Warn, format_args!($($t)*)) } }

/// CONNECTX_LOG_FILE at load: opened once to check it (Err(errno): the caller warns and lines
/// stay on stderr). A regular file is closed again and reopened at the first line due; a FIFO
/// or a device, which a close would disturb (a reader sees end of file), stays open, high.
pub fn configure(path: &[u8]) -> Result<(), c_int> {
    // SAFETY: called once, at load, before STATE leaves NONE: nobody reads PATH yet.
    let buf = unsafe { &mut *PATH.0.get() };
    // A relative path is taken from the directory the program starts in: the file is opened
    // later, maybe after the program changed directory.
    let mut at = 0;
    if !path.starts_with(b"/") {
        // SAFETY: buf is writable for its length.
        if !unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) }.is_null() {
            at = buf.iter().position(|&b| b == 0).unwrap_or(0);
            if at > 0 && buf[at - 1] != b'/' {
                buf[at] = b'/';
                at += 1;
            }
        }
    }
    if at + path.len() >= buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    buf[at..at + path.len()].copy_from_slice(path);
    buf[at + path.len()] = 0;
    PATH_LEN.store(at + path.len(), Ordering::Release);
    let fd = open_file()?;
    // SAFETY: st is valid for writes.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let regular =
        unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
    if regular {
        crate::sys::close(fd);
        STATE.store(PENDING, Ordering::Release);
    } else {
        install(fd);
    }
    Ok(())
}

/// Opens CONNECTX_LOG_FILE: appended, close-on-exec, created 0600, never through a symlink in
/// any component, at a high number.
fn open_file() -> Result<c_int, c_int> {
    let flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NOCTTY
        // A FIFO nobody reads would block the program (and a full pipe on every line):
        // non-blocking, so such a file fails with ENXIO and lines that do not fit are dropped.
        | libc::O_NONBLOCK;
    let _keep = crate::sys::KeepErrno::new();
    // SAFETY: PATH holds path() followed by a NUL.
    let fd = unsafe { open_no_symlinks(PATH.0.get().cast(), flags, 0o600) }?;
    Ok(ownfd::move_high(fd))
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// open(2) that follows no symbolic link in any component: openat2 with RESOLVE_NO_SYMLINKS
/// (Linux 5.6+), else a walk one component at a time (`open_walk`). ELOOP for a symlink.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub unsafe fn open_no_symlinks(
    path: *const libc::c_char,
    flags: c_int,
    mode: u32,
) -> Result<c_int, c_int> {
    static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow {
            flags: flags as u64,
            mode: mode as u64,
            resolve: libc::RESOLVE_NO_SYMLINKS,
        };
        // SAFETY: path is NUL-terminated (caller); how is an open_how of the size given.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                path,
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            return Ok(fd as c_int);
        }
        match crate::sys::errno() {
            // No openat2 (or a seccomp filter that refuses it): walk.
            libc::ENOSYS => NO_OPENAT2.store(true, Ordering::Relaxed),
            libc::EPERM => {}
            e => return Err(e),
        }
    }
    // SAFETY: as above.
    unsafe { open_walk(std::ffi::CStr::from_ptr(path).to_bytes(), flags, mode) }
}

/// The walk: every directory component opened with O_PATH|O_NOFOLLOW from the previous one and
/// refused if it is a symlink; the last one opened with O_NOFOLLOW. No allocation.
///
/// # Safety
/// None beyond the call's arguments (kept unsafe to mirror `open_no_symlinks`).
pub unsafe fn open_walk(path: &[u8], flags: c_int, mode: u32) -> Result<c_int, c_int> {
    struct Dir(c_int);
    impl Drop for Dir {
        fn drop(&mut self) {
            if self.0 >= 0 {
                crate::sys::close(self.0);
            }
        }
    }
    if path.is_empty() {
        return Err(libc::ENOENT);
    }
    if path.ends_with(b"/") {
        return Err(libc::EISDIR);
    }
    let mut dir = Dir(-1);
    if path[0] == b'/' {
        // SAFETY: a NUL-terminated literal.
        let fd = unsafe {
            libc::open(
                c"/".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(crate::sys::errno());
        }
        dir.0 = fd;
    }
    let mut parts = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .peekable();
    let mut name = [0u8; 256];
    while let Some(part) = parts.next() {
        if part.len() >= name.len() {
            return Err(libc::ENAMETOOLONG);
        }
        name[..part.len()].copy_from_slice(part);
        name[part.len()] = 0;
        let at = if dir.0 >= 0 { dir.0 } else { libc::AT_FDCWD };
        if parts.peek().is_none() {
            // SAFETY: name is NUL-terminated.
            let fd =
                unsafe { libc::openat(at, name.as_ptr().cast(), flags | libc::O_NOFOLLOW, mode) };
            return if fd < 0 {
                Err(crate::sys::errno())
            } else {
                Ok(fd)
            };
        }
        // SAFETY: name is NUL-terminated.
        let fd = unsafe {
            libc::openat(
                at,
                name.as_ptr().cast(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(crate::sys::errno());
        }
        let next = Dir(fd);
        // SAFETY: st is valid for writes.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(crate::sys::errno());
        }
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {}
            libc::S_IFLNK => return Err(libc::ELOOP),
            _ => return Err(libc::ENOTDIR),
        }
        dir = next;
    }
    Err(libc::ENOENT)
}

/// The program is closing `fd`: if it is our log file, go back to stderr rather than write into
/// whatever the number is used for next.
pub fn forget_fd(fd: c_int) {
    if fd != 2 && FD.load(Ordering::Relaxed) == fd && STATE.load(Ordering::Acquire) == OPEN {
        FD.store(2, Ordering::Release);
        STATE.store(GONE, Ordering::Release);
    }
}

/// close_range / closefrom over first..=last.
pub fn forget_range(first: u32, last: u32) {
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 && (first..=last).contains(&(fd as u32)) {
        forget_fd(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("connectx-log-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        std::os::unix::fs::symlink(d.join("real/f"), d.join("real/flink")).unwrap();
        d
    }

    fn walk(p: &std::path::Path) -> Result<c_int, c_int> {
        use std::os::unix::ffi::OsStrExt;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
        // SAFETY: a plain byte path.
        unsafe { open_walk(p.as_os_str().as_bytes(), flags, 0o600) }
    }

    fn nofollow(p: &std::path::Path) -> Result<c_int, c_int> {
        let c = std::ffi::CString::new(p.display().to_string()).unwrap();
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
        // SAFETY: a NUL-terminated path.
        unsafe { open_no_symlinks(c.as_ptr(), flags, 0o600) }
    }

    #[test]
    fn the_walk_refuses_a_symlink_in_any_component() {
        let d = tmpdir("walk");
        for open in [walk, nofollow] {
            assert_eq!(open(&d.join("link/x.log")), Err(libc::ELOOP));
            assert_eq!(open(&d.join("real/flink")), Err(libc::ELOOP));
            assert!(!d.join("real/x.log").exists() && !d.join("real/f").exists());
            let fd = open(&d.join("real/./y.log")).expect("a plain path opens");
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
            assert!(d.join("real/y.log").exists());
            assert_eq!(open(&d.join("nope/z.log")), Err(libc::ENOENT));
            assert_eq!(open(&d.join("real/y.log/z")), Err(libc::ENOTDIR));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
