//! The socket options connectx sets behind the program's back, shared by the TCP and UDP
//! policies: each change is remembered (`K_*` bits of the record) so the program's own value
//! (`APP_*` bits) can be put back and answered by getsockopt.

use crate::state::*;
use crate::sys;
use libc::c_int;

pub const IP_BIND_ADDRESS_NO_PORT: c_int = 24;
pub const IP_LOCAL_PORT_RANGE: c_int = 51;

/// Puts the program's own SO_REUSEADDR and SO_REUSEPORT back into the kernel where ours differ.
/// Not SO_REUSEPORT on a UDP socket without a fixed port of the program's: there it is the UDP
/// lock's switch, and with it the kernel's autobind (a send, a connect) would hand out a port
/// the lock shares, to the same destination too (KERNEL.md); getsockopt answers the program's
/// value all the same.
pub fn restore_app_reuse(fd: c_int, r: &Sock) {
    let program_port = r.is(Phase::Group)
        || r.has_port() && !r.is(Phase::Ours) && r.app_addr().is_some_and(|a| a.port() != 0);
    for (app, k, name) in [
        (APP_REUSEADDR, K_REUSEADDR, libc::SO_REUSEADDR),
        (APP_REUSEPORT, K_REUSEPORT, libc::SO_REUSEPORT),
    ] {
        let want = r.any(app) && (name != libc::SO_REUSEPORT || !r.is_udp() || program_port);
        if want != r.any(k) && sys::set_int(fd, libc::SOL_SOCKET, name, want as c_int).is_ok() {
            r.put(k, want);
        }
    }
}

/// Reads the options we change back from the kernel into the `K_*` bits (after `RESYNC`).
pub fn resync(fd: c_int, r: &Sock) {
    for (k, level, name) in [
        (K_REUSEADDR, libc::SOL_SOCKET, libc::SO_REUSEADDR),
        (K_REUSEPORT, libc::SOL_SOCKET, libc::SO_REUSEPORT),
        (K_NOPORT, libc::IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT),
    ] {
        if let Ok(v) = sys::get_int(fd, level, name) {
            r.put(k, v != 0);
        }
    }
    r.clear(RESYNC);
}

/// Sets an option of ours in the kernel and remembers that it is set (`k` bit).
pub fn set_kernel(
    fd: c_int,
    r: &Sock,
    k: u32,
    level: c_int,
    name: c_int,
    on: bool,
) -> Result<(), c_int> {
    if r.any(k) == on {
        return Ok(());
    }
    sys::set_int(fd, level, name, on as c_int)?;
    r.put(k, on);
    Ok(())
}

pub fn set_reuseaddr(fd: c_int, r: &Sock, on: bool) -> Result<(), c_int> {
    set_kernel(fd, r, K_REUSEADDR, libc::SOL_SOCKET, libc::SO_REUSEADDR, on)
}

pub fn set_reuseport(fd: c_int, r: &Sock, on: bool) -> Result<(), c_int> {
    set_kernel(fd, r, K_REUSEPORT, libc::SOL_SOCKET, libc::SO_REUSEPORT, on)
}

pub fn set_noport(fd: c_int, r: &Sock, on: bool) -> Result<(), c_int> {
    set_kernel(
        fd,
        r,
        K_NOPORT,
        libc::IPPROTO_IP,
        IP_BIND_ADDRESS_NO_PORT,
        on,
    )
}

/// The socket's own port range (IP_LOCAL_PORT_RANGE, lo | hi << 16; 0 = none).
pub fn set_port_range(fd: c_int, range: u32) -> Result<(), c_int> {
    sys::set_int(fd, libc::IPPROTO_IP, IP_LOCAL_PORT_RANGE, range as c_int)
}
