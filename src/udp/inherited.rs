//! UDP flows this process inherited (across exec, or from a parent that forked it before the
//! library loaded): adopted once, when the library loads (issue 17, why 7).
//!
//! A socket that a connectx process shared (SO_REUSEPORT on, connectx's mark, `consent`) is open
//! to other flows of its user; without a record here its next connect would be the kernel's,
//! unchecked, and could land on a 4-tuple another socket owns. At load the process's fds are few
//! and known: /proc/self/fd is read once (getdents64 into a stack buffer, no allocation), and
//! every inherited UDP socket that carries the mark gets a record as a shared fixed port (its port
//! is kept, whoever chose it): its connects are then checked like every shared fixed port
//! (EADDRNOTAVAIL for a taken 4-tuple). Nothing is asked per call.

use crate::addr::SockAddr;
use crate::state::*;
use crate::sys;
use libc::c_int;

/// Looks at the fds this process starts with. Called once from the library's constructor.
pub fn adopt() {
    let _keep = sys::KeepErrno::new();
    // SAFETY: a NUL-terminated path.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return;
    }
    let mut buf = [0u8; 4096];
    // Bounded: a process starts with few fds; a huge table is looked at up to this many.
    for _ in 0..64 {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
            let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[at + 19..(at + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            if let Some(fd) = std::str::from_utf8(name)
                .ok()
                .and_then(|s| s.parse::<c_int>().ok())
                .filter(|&fd| fd != dir)
            {
                adopt_one(fd);
            }
            at += reclen;
        }
    }
    sys::close(dir);
}

/// What the kernel says about one inherited fd: a UDP socket of ours to adopt, and its flags.
pub fn flags_for(domain: c_int, ty: c_int, reuseport: bool, marked: bool, v6: bool) -> Option<u32> {
    let inet = domain == libc::AF_INET || domain == libc::AF_INET6;
    (inet && ty == libc::SOCK_DGRAM && reuseport && marked)
        .then_some(UDP | (v6 as u32 * V6) | K_REUSEPORT | K_NOPORT)
}

fn adopt_one(fd: c_int) {
    let get = |level, name| sys::get_int(fd, level, name);
    let Ok(domain) = get(libc::SOL_SOCKET, libc::SO_DOMAIN) else {
        return; // not a socket
    };
    let (Ok(ty), Ok(reuseport), Ok(marked)) = (
        get(libc::SOL_SOCKET, libc::SO_TYPE),
        get(libc::SOL_SOCKET, libc::SO_REUSEPORT),
        get(libc::IPPROTO_IP, crate::sockopt::IP_BIND_ADDRESS_NO_PORT),
    ) else {
        return;
    };
    let v6 = domain == libc::AF_INET6;
    let Some(flags) = flags_for(domain, ty, reuseport != 0, marked != 0, v6) else {
        return;
    };
    let Ok(local) = sys::getsockname(fd).map(|a: SockAddr| a) else {
        return;
    };
    if local.port() == 0 {
        return;
    }
    track(fd, flags);
    if let Some(r) = get_record(fd) {
        // Kept as a shared fixed port, whoever chose it.
        r.enter(Phase::Shared);
        r.set_app_addr(&local);
        r.set_local(&local);
        if peer_connected(fd) {
            r.set(CONNECTED);
        }
        crate::debug!("fd {fd}: an inherited UDP flow on {local}: its connects are checked");
    }
}

fn get_record(fd: c_int) -> Option<&'static Sock> {
    crate::state::get(fd)
}

fn peer_connected(fd: c_int) -> bool {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: sa and len are valid for writes of the sizes given.
    unsafe {
        libc::getpeername(
            fd,
            (&mut sa as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_marked_shared_udp_sockets_are_adopted() {
        let udp = |reuseport, marked| {
            flags_for(libc::AF_INET, libc::SOCK_DGRAM, reuseport, marked, false)
        };
        assert!(udp(true, true).is_some_and(|f| f & UDP != 0 && f & K_REUSEPORT != 0));
        assert!(
            udp(true, false).is_none(),
            "the program's own reuseport socket"
        );
        assert!(udp(false, true).is_none(), "not open to sharing");
        assert!(flags_for(libc::AF_INET, libc::SOCK_STREAM, true, true, false).is_none());
        assert!(flags_for(libc::AF_UNIX, libc::SOCK_DGRAM, true, true, false).is_none());
    }
}
