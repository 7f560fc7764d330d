//! The supervisor's memory of the program's sockets, between calls. The core's policy keeps a
//! socket's phase in its per-fd table (`connectx_core::state`), which in the supervisor is
//! indexed by the number of the duplicate held for one call. Between calls the record lives
//! here, keyed by the socket's cookie (SO_COOKIE: unique for the life of the system, so a
//! number the program closed and reused never inherits a record), and is loaded into the table
//! for the duplicate at the start of a call and taken back out at its end. This file is the
//! only place that knows the table's record layout: if the core's state changes shape, this is
//! what follows it.

use connectx_core::addr::SockAddr;
use connectx_core::state::{self, Sock};
use libc::c_int;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Copy)]
struct Saved {
    flags: u32,
    phase: state::Phase,
    port_range: u32,
    app: Option<SockAddr>,
    local: Option<SockAddr>,
    /// Where the program held it at its last call (thread, fd number) and what it is (the
    /// socket's inode): the sweep keeps the record while /proc/TID/fd/FD still names it.
    tid: i32,
    fd: i32,
    ino: u64,
}

static RECORDS: Mutex<Option<HashMap<u64, Saved>>> = Mutex::new(None);
/// Records above this many trigger a sweep of those whose process is gone; the limit then
/// doubles, so a sweep is paid for by as many calls as it scans.
static SWEEP_AT: Mutex<usize> = Mutex::new(4096);

pub fn cookie(dup: c_int) -> Option<u64> {
    let mut v = 0u64;
    let mut len = 8 as libc::socklen_t;
    // SAFETY: v is 8 writable bytes.
    let r = unsafe {
        libc::getsockopt(
            dup,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(v)
}

pub fn known(cookie: u64) -> bool {
    RECORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|m| m.contains_key(&cookie))
}

/// The port phase of the record of `cookie`, if there is one.
pub fn phase(cookie: u64) -> Option<state::Phase> {
    RECORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&cookie).map(|s| s.phase))
}

pub fn drop_record(cookie: u64) {
    if let Some(m) = RECORDS.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        m.remove(&cookie);
    }
}

/// Puts the record of `cookie` in the core's table for `dup` (of kind `kind`: TCP/UDP, V6), or a
/// fresh one made from what the kernel says about the socket now (the options the program set,
/// a port it already has), as the preload would have learned them through its hooks.
/// `at_connect`: the call is a connect (a bind needs no look at the socket's port).
pub fn load(dup: c_int, cookie: u64, kind: u32, at_connect: bool) -> Option<&'static Sock> {
    let saved = RECORDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&cookie).copied());
    state::forget(dup);
    state::track(dup, kind);
    let r = state::get_or_create(dup)?;
    match saved {
        Some(s) => {
            r.set(s.flags);
            r.restore(s.phase);
            r.port_range
                .store(s.port_range, std::sync::atomic::Ordering::Relaxed);
            if let Some(a) = s.app {
                r.set_app_addr(&a);
            }
            if let Some(a) = s.local {
                r.set_local(&a);
            }
        }
        None => {
            let on =
                |level, name| connectx_core::sys::get_int(dup, level, name).is_ok_and(|v| v != 0);
            if on(libc::SOL_SOCKET, libc::SO_REUSEADDR) {
                r.set(state::APP_REUSEADDR | state::K_REUSEADDR);
            }
            if on(libc::SOL_SOCKET, libc::SO_REUSEPORT) {
                r.set(state::APP_REUSEPORT | state::K_REUSEPORT);
            }
            if on(
                libc::IPPROTO_IP,
                connectx_core::sockopt::IP_BIND_ADDRESS_NO_PORT,
            ) {
                r.set(state::APP_NOPORT | state::K_NOPORT);
            }
            // Bound before we saw it (a send's autobind, a bind before supervision): asked at
            // connect only (at bind the kernel refuses a socket with a port itself).
            if at_connect
                && let Ok(a) = connectx_core::sys::getsockname(dup)
                && a.port() != 0
            {
                r.set_local(&a);
                r.enter(state::Phase::Bound);
            }
        }
    }
    r.cookie.store(cookie, std::sync::atomic::Ordering::Relaxed);
    Some(r)
}

/// Takes the record of `dup` (the program's `fd`, called by thread `tid`) back out of the
/// core's table (the duplicate is about to close).
pub fn save(dup: c_int, cookie: u64, r: &Sock, tid: i32, fd: i32) {
    // SAFETY: plain data; fstat on our own duplicate.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ino = if unsafe { libc::fstat(dup, &mut st) } == 0 {
        st.st_ino
    } else {
        0
    };
    let s = Saved {
        flags: r.flags(),
        phase: r.phase(),
        port_range: r.port_range.load(std::sync::atomic::Ordering::Relaxed),
        app: r.app_addr(),
        local: r.local(),
        tid,
        fd,
        ino,
    };
    state::forget(dup);
    let mut g = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let m = g.get_or_insert_with(HashMap::new);
    m.insert(cookie, s);
    let mut at = SWEEP_AT.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() > *at {
        // The supervisor never sees a close: sockets the program no longer holds where it
        // last used them go (one that moved to another number then starts afresh, from what
        // the kernel says about it). Paid for by the calls that doubled the map.
        m.retain(|_, s| still_held(s));
        *at = (m.len() * 2).max(4096);
    }
}

fn still_held(s: &Saved) -> bool {
    let want = format!("socket:[{}]", s.ino);
    std::fs::read_link(format!("/proc/{}/fd/{}", s.tid, s.fd))
        .is_ok_and(|l| l.as_os_str().as_encoded_bytes() == want.as_bytes())
}

/// Forgets `dup` in the core's table without keeping its record.
pub fn unload(dup: c_int) {
    state::forget(dup);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_kept_while_its_socket_is_held_where_it_was() {
        // SAFETY: plain system calls on our own fds.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        assert!(fd >= 0);
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        let s = Saved {
            flags: 0,
            phase: state::Phase::Free,
            port_range: 0,
            app: None,
            local: None,
            tid: std::process::id() as i32,
            fd,
            ino: st.st_ino,
        };
        assert!(still_held(&s));
        assert!(
            !still_held(&Saved {
                ino: st.st_ino + 1,
                ..s
            }),
            "another socket"
        );
        unsafe { libc::close(fd) };
        assert!(!still_held(&s), "closed");
    }
}
