//! What the lock asks the kernel, shared by the search (`lock`) and the connects on ports
//! connectx already shares (`shared`): the peer as the kernel makes it, the source and the
//! interface replies come in by (the route with the socket's own context), the SOCK_DIAG check
//! in the socket's namespace, and the small steps around a connect (give a port back, drop
//! datagrams that were not ours, unlock).

use super::{Verdict, hints, lock_unavailable, source};
use crate::addr::SockAddr;
use crate::netlink::{self, Ns, RouteContext};
use crate::real;
use crate::sockopt::set_reuseport;
use crate::state::*;
use crate::stats::{self, Event};
use crate::sys::{self, KeepErrno, errno};
use libc::{c_int, socklen_t};
use std::sync::atomic::{AtomicBool, Ordering::*};

static WARNED_DIAG: AtomicBool = AtomicBool::new(false);

pub fn wildcard(r: &Sock) -> SockAddr {
    if r.any(V6) {
        SockAddr::V6 {
            ip: [0; 16],
            port: 0,
            flowinfo: 0,
            scope: 0,
        }
    } else {
        SockAddr::V4 {
            ip: [0; 4],
            port: 0,
        }
    }
}

/// The peer as the kernel's connect makes it: an unspecified address means this host (the
/// bound IPv4 address, else loopback; IPv6 `::` is `::1`, or v4-mapped loopback on a socket
/// bound to a v4-mapped address).
pub fn peer_as_kernel_makes_it(dst: &SockAddr, bound: Option<&SockAddr>) -> SockAddr {
    let port = dst.port();
    let bound_v4 = bound.and_then(|b| b.as_v4()).filter(|ip| *ip != [0; 4]);
    match dst {
        SockAddr::V4 {
            ip: [0, 0, 0, 0], ..
        } => SockAddr::V4 {
            ip: bound_v4.unwrap_or([127, 0, 0, 1]),
            port,
        },
        SockAddr::V6 { ip, .. } if dst.v4_mapped() == Some([0; 4]) => {
            let _ = ip;
            SockAddr::mapped(bound_v4.unwrap_or([127, 0, 0, 1]), port)
        }
        SockAddr::V6 { ip, .. } if *ip == [0; 16] => {
            if bound.and_then(|b| b.v4_mapped()).is_some() {
                SockAddr::mapped([127, 0, 0, 1], port)
            } else {
                let mut one = [0u8; 16];
                one[15] = 1;
                SockAddr::V6 {
                    ip: one,
                    port,
                    flowinfo: 0,
                    scope: 0,
                }
            }
        }
        _ => *dst,
    }
}

pub fn same_ip(a: &SockAddr, b: &SockAddr) -> bool {
    match (a, b) {
        (SockAddr::V4 { ip: x, .. }, SockAddr::V4 { ip: y, .. }) => x == y,
        (SockAddr::V6 { ip: x, .. }, SockAddr::V6 { ip: y, .. }) => x == y,
        _ => false,
    }
}

/// The options routing may depend on, read from the socket when the program set any.
fn context(fd: c_int, r: &Sock) -> RouteContext {
    if !r.any(CONTEXT) {
        return RouteContext::default();
    }
    let get = |level, name| sys::get_int(fd, level, name).unwrap_or(0);
    let tos = if r.any(V6) {
        get(libc::IPPROTO_IPV6, libc::IPV6_TCLASS)
    } else {
        get(libc::IPPROTO_IP, libc::IP_TOS)
    };
    RouteContext {
        oif: get(libc::SOL_SOCKET, libc::SO_BINDTOIFINDEX) as u32,
        mark: get(libc::SOL_SOCKET, libc::SO_MARK) as u32,
        tos: tos as u8,
    }
}

/// Where the check looks: the peer as the kernel makes it, and the interface replies from it
/// come in by (a socket bound to that device must be seen; SO_BINDTODEVICE's own if set).
pub struct Flow {
    /// The program's socket: its network namespace is the one asked.
    pub sock: c_int,
    /// That namespace's SO_NETNS_COOKIE (0: not known).
    pub netns: u64,
    pub peer: SockAddr,
    pub ifindex: u32,
    /// The source as the bound address or the route says: for looking before binding only.
    pub src_hint: Option<SockAddr>,
}

pub fn flow_for(fd: c_int, r: &Sock, dst: &SockAddr, bound: Option<&SockAddr>) -> Flow {
    let ctx = context(fd, r);
    let peer = peer_as_kernel_makes_it(dst, bound);
    // No route: the lookup on the address's own scope; the connect will say why.
    let route = source::source_for(fd, &peer, &ctx).ok();
    let ifindex = if ctx.oif != 0 {
        ctx.oif
    } else {
        route.map_or(0, |(_, oif)| oif)
    };
    let src_hint = bound
        .filter(|a| !a.is_unspecified())
        .map(|a| a.with_port(0))
        .or(route.map(|(src, _)| src));
    Flow {
        sock: fd,
        netns: super::exhausted::netns_of(fd, r),
        peer,
        ifindex,
        src_hint,
    }
}

/// Connects the socket that holds a port's lock to the peer's address with port 0. Nothing is
/// sent; the kernel picks the source exactly as for the real connect (routing, mark, device),
/// which getsockname then tells; and the port's reuseport group is marked as having connected
/// sockets, without which kernels before 6.13 answer a lookup with any member of the group.
/// The socket, connected to port 0, is never the answer to the check itself.
pub fn connect_dummy(fd: c_int, peer: &SockAddr) -> Result<SockAddr, c_int> {
    let _keep = KeepErrno::new();
    let raw = peer.with_port(0).to_raw();
    // SAFETY: raw holds a sockaddr of raw.len() bytes.
    if unsafe { real::connect(fd, raw.ptr(), raw.len()) } < 0 {
        return Err(errno());
    }
    sys::getsockname(fd)
}

pub enum Check {
    Free,
    /// A connected socket owns the 4-tuple.
    Taken,
    /// Another unconnected socket would receive: another locker on the port this moment (or a
    /// socket of the same user's that bound it with SO_REUSEPORT): not this port, for now.
    Busy,
    Failed(c_int),
}

/// Would a datagram from the peer to `local` reach a socket other than `mine` (the socket, and
/// the sentinel that holds the lock for it)? A socket connected to the peer's port 0
/// (`connect_dummy`) matches any port of the peer, below a socket connected to the very 4-tuple.
pub fn check(flow: &Flow, local: &SockAddr, mine: &[u64]) -> Check {
    match netlink::udp_exact(
        Ns::of_known(flow.sock, flow.netns),
        local,
        &flow.peer,
        flow.ifindex,
    ) {
        Ok(None) => Check::Free,
        Ok(Some(f)) if mine.contains(&f.cookie) => Check::Free,
        Ok(Some(f)) if f.connected_to(&flow.peer) => Check::Taken,
        // Unconnected (another connect's lock at work), or a socket of another peer that a
        // reuseport group picked for the lookup (`Found::connected_to`): look again later.
        Ok(Some(_)) => Check::Busy,
        Err(e) => Check::Failed(e),
    }
}

pub fn cookie(fd: c_int, r: &Sock) -> Result<u64, c_int> {
    let c = r.cookie.load(Acquire);
    if c != 0 {
        return Ok(c);
    }
    let c = sys::cookie(fd)?;
    r.cookie.store(c, Release);
    Ok(c)
}

/// Gives back a port the lock bound (no SOCK_BINDPORT_LOCK: the kernel unhashes it, keeping a
/// bound address) and disconnects the socket if it was connected.
pub fn release(fd: c_int) {
    let _keep = KeepErrno::new();
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a valid AF_UNSPEC sockaddr of its own size.
    unsafe {
        real::connect(
            fd,
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as socklen_t,
        )
    };
}

/// Drops what is queued on the socket: datagrams that reached it while the lock held a port for
/// it (for the port's other flows, or from anyone who sent to the port) or during a connect that
/// had to be undone. Never the program's: the kernel's own socket would not have been there.
pub fn drain(fd: c_int) {
    let _keep = KeepErrno::new();
    let mut buf = [0u8; 64];
    for _ in 0..256 {
        // SAFETY: buf is writable for its length.
        let n = unsafe {
            real::recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        if n < 0 && errno() != libc::ECONNREFUSED {
            break;
        }
    }
}

pub fn diag_failed(e: c_int) -> Verdict {
    if e == netlink::WRONG_NETNS {
        // The socket is in another network namespace than this thread, and the pool has no
        // netlink socket there: nothing can be asked, so the kernel's own answer.
        crate::debug!("UDP lock: the socket's network namespace cannot be asked from here");
        return Verdict::fail(libc::EAGAIN);
    }
    stats::count(Event::UdpNoDiag);
    lock_unavailable(&WARNED_DIAG, "SOCK_DIAG did not answer", e);
    // At exhaustion the kernel's answer is EAGAIN; on a shared port an unchecked connect could
    // make a duplicate 4-tuple. Either way: EAGAIN, never a guess.
    Verdict::fail(libc::EAGAIN)
}

/// The socket's connect went through on (src, port): unlock and remember.
pub fn connected(fd: c_int, r: &Sock, local: &SockAddr, dst: &SockAddr) {
    let _keep = KeepErrno::new();
    let _ = set_reuseport(fd, r, true);
    super::consent::mark(fd, r);
    if !r.has_port() {
        r.enter(Phase::Bound);
    }
    r.set_local(local);
    r.set(CONNECTED);
    let slot = hints::find(dst);
    hints::unmark(r.flow.swap(hints::mark(slot, local.port()), AcqRel));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_peers_become_this_host() {
        let v4 = |ip, port| SockAddr::V4 { ip, port };
        assert_eq!(
            peer_as_kernel_makes_it(&v4([0; 4], 53), None),
            v4([127, 0, 0, 1], 53)
        );
        let bound = v4([127, 0, 0, 5], 0);
        assert_eq!(
            peer_as_kernel_makes_it(&v4([0; 4], 53), Some(&bound)),
            v4([127, 0, 0, 5], 53)
        );
        assert_eq!(
            peer_as_kernel_makes_it(&SockAddr::mapped([0; 4], 53), None),
            SockAddr::mapped([127, 0, 0, 1], 53)
        );
        let any6 = SockAddr::V6 {
            ip: [0; 16],
            port: 53,
            flowinfo: 0,
            scope: 0,
        };
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(
            peer_as_kernel_makes_it(&any6, None),
            SockAddr::V6 {
                ip: one,
                port: 53,
                flowinfo: 0,
                scope: 0
            }
        );
        let other = v4([127, 0, 0, 9], 53);
        assert_eq!(peer_as_kernel_makes_it(&other, Some(&bound)), other);
    }

    #[test]
    fn same_ip_ignores_ports() {
        let a = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 4000,
        };
        assert!(same_ip(&a, &a.with_port(0)));
        assert!(!same_ip(
            &a,
            &SockAddr::V4 {
                ip: [127, 0, 0, 2],
                port: 4000
            }
        ));
        assert!(!same_ip(&a, &SockAddr::mapped([127, 0, 0, 1], 4000)));
    }
}
