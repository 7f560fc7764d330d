//! SOCK_DIAG dumps of this network namespace's TCP and UDP sockets (NETLINK_SOCK_DIAG,
//! inet_diag_req_v2 / inet_diag_msg from linux/inet_diag.h), parsed by hand: two fixed
//! structures, fewer lines than wiring up a netlink crate (README "Dependencies").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(test)]
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_TIME_WAIT: u8 = 6;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;
/// Bound, neither listening nor connected (Linux 6.5+ dumps these).
pub const TCP_BOUND_INACTIVE: u8 = 13;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

#[derive(Clone)]
pub struct Sock {
    pub state: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    /// IP_BIND_ADDRESS_NO_PORT (INET_DIAG_SOCKOPT, Linux 5.10+; None where the kernel does not
    /// say): a TCP socket with it got its port from connect, in a bucket connect can share.
    pub no_port: Option<bool>,
    /// The socket's inode (0 for TIME_WAIT): finds its owner in /proc/PID/fd.
    pub inode: u32,
    /// Time left on the socket's timer in ms (TIME_WAIT: until it goes).
    pub expires: u32,
}

/// INET_DIAG_SOCKOPT: struct inet_diag_sockopt, sent with every socket since Linux 5.10.
const INET_DIAG_SOCKOPT: u16 = 22;

/// IP_BIND_ADDRESS_NO_PORT from the attributes after inet_diag_msg (bit 0 of the second byte
/// of inet_diag_sockopt: bitfields are laid out from the low bit on Linux's ABIs).
fn no_port(mut attrs: &[u8]) -> Option<bool> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == INET_DIAG_SOCKOPT && len >= 6 {
            return Some(attrs[5] & 1 != 0);
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

/// Every socket of `proto` (IPPROTO_TCP or IPPROTO_UDP), IPv4 and IPv6, in any state.
/// IPv4-mapped IPv6 addresses are shown as IPv4 (the kernel treats them as such).
pub fn dump(proto: u8) -> std::io::Result<Vec<Sock>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        dump_family(family, proto, &mut out)?;
    }
    Ok(out)
}

fn addr(family: u8, b: &[u8]) -> IpAddr {
    if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        let a: [u8; 16] = b[..16].try_into().expect("16 bytes");
        let v6 = Ipv6Addr::from(a);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

fn dump_family(family: u8, proto: u8, out: &mut Vec<Sock>) -> std::io::Result<()> {
    // SAFETY: plain socket calls on a descriptor we own and close.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let r = exchange(fd, family, proto, out);
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    r
}

fn exchange(fd: i32, family: u8, proto: u8, out: &mut Vec<Sock>) -> std::io::Result<()> {
    // nlmsghdr (16) + inet_diag_req_v2 (56).
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = family;
    req[17] = proto;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    // SAFETY: the buffer is ours and initialised.
    if unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: as above.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut at = 0usize;
        let n = n as usize;
        while at + 16 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
            if len < 16 || at + len > n {
                break;
            }
            match ty {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let e = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                    if e == 0 {
                        return Ok(());
                    }
                    // No IPv6 in this kernel: nothing to dump there.
                    if family == libc::AF_INET6 as u8 && -e == libc::ENOENT {
                        return Ok(());
                    }
                    return Err(std::io::Error::from_raw_os_error(-e));
                }
                SOCK_DIAG_BY_FAMILY if len >= 16 + 72 => {
                    let m = &buf[at + 16..at + len];
                    let fam = m[0];
                    let u32_at = |o: usize| u32::from_ne_bytes(m[o..o + 4].try_into().unwrap());
                    out.push(Sock {
                        state: m[1],
                        sport: u16::from_be_bytes([m[4], m[5]]),
                        dport: u16::from_be_bytes([m[6], m[7]]),
                        src: addr(fam, &m[8..24]),
                        dst: addr(fam, &m[24..40]),
                        expires: u32_at(52),
                        inode: u32_at(68),
                        no_port: no_port(&m[72..]),
                    });
                }
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
}
