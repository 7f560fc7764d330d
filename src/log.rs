//! Logging with one write(2) of a stack buffer per line: no allocation, no lock, safe after fork
//! and never on the program's stdout (PITFALLS 14). Lines carry the program name and pid.

use crate::config::{self, Level};
use libc::c_int;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Where lines go: stderr unless CONNECTX_LOG_FILE opened.
static FD: AtomicI32 = AtomicI32::new(2);

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
    // SAFETY: buf holds len + 1 initialised bytes; write is not hooked.
    unsafe { libc::write(FD.load(Ordering::Relaxed), l.buf.as_ptr().cast(), l.len + 1) };
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

/// Opens CONNECTX_LOG_FILE: appended, close-on-exec, created 0600, never through a symlink.
/// Returns the errno on failure (the caller reports it and stays on stderr).
///
/// # Safety
/// `path` must be a NUL-terminated string.
pub unsafe fn open_file(path: *const libc::c_char) -> Result<(), c_int> {
    let flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NOCTTY
        // A FIFO nobody reads would block the program at load (and a full pipe on every line):
        // non-blocking, so such a file fails with ENXIO and lines that do not fit are dropped.
        | libc::O_NONBLOCK;
    // SAFETY: path is NUL-terminated (caller); open is not hooked.
    let fd = unsafe { libc::open(path, flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(crate::sys::errno());
    }
    FD.store(fd, Ordering::Relaxed);
    Ok(())
}

/// The program is closing `fd`: if it is our log file, go back to stderr rather than write into
/// whatever the number is used for next.
pub fn forget_fd(fd: c_int) {
    if fd != 2 && FD.load(Ordering::Relaxed) == fd {
        let _ = FD.compare_exchange(fd, 2, Ordering::Relaxed, Ordering::Relaxed);
    }
}

pub fn fd() -> c_int {
    FD.load(Ordering::Relaxed)
}
