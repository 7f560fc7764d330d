//! Thin wrappers over libc socket calls for the lab tools.
//!
//! The tools must make the exact system calls a legacy C program makes
//! (bind-before-connect, options before bind, ...), which std's socket types
//! cannot express, so they go through libc — and therefore through the
//! preloaded library's hooks when LD_PRELOAD is set.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// IPPROTO_IP option number (Linux 4.2+); not exported by every libc version.
pub const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;

pub struct Sock(OwnedFd);

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn family_of(addr: &SocketAddr) -> libc::c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

pub fn to_raw(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = &mut ss as *mut _ as *mut libc::sockaddr_in;
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            unsafe {
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_port = a.port().to_be();
                (*sin).sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            }
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = &mut ss as *mut _ as *mut libc::sockaddr_in6;
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            unsafe {
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_port = a.port().to_be();
                (*sin6).sin6_addr.s6_addr = a.ip().octets();
                (*sin6).sin6_scope_id = a.scope_id();
                (*sin6).sin6_flowinfo = a.flowinfo();
            }
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

pub fn from_raw(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The wildcard address of the same family as `like`.
pub fn any_of(like: &SocketAddr) -> IpAddr {
    match like {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

impl Sock {
    pub fn new(family: libc::c_int, ty: libc::c_int) -> io::Result<Sock> {
        // SAFETY: plain system call; the fd is owned from here on.
        let fd = cvt(unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Sock(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Adopt a descriptor returned by accept().
    fn adopt(fd: RawFd) -> Sock {
        // SAFETY: fd is a fresh descriptor from accept4 that nobody else owns.
        Sock(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn bind(&self, addr: &SocketAddr) -> io::Result<()> {
        let (ss, len) = to_raw(addr);
        // SAFETY: ss/len describe a valid sockaddr.
        cvt(unsafe { libc::bind(self.fd(), &ss as *const _ as *const libc::sockaddr, len) })?;
        Ok(())
    }

    pub fn connect(&self, addr: &SocketAddr) -> io::Result<()> {
        let (ss, len) = to_raw(addr);
        // SAFETY: ss/len describe a valid sockaddr.
        cvt(unsafe { libc::connect(self.fd(), &ss as *const _ as *const libc::sockaddr, len) })?;
        Ok(())
    }

    pub fn listen(&self, backlog: libc::c_int) -> io::Result<()> {
        // SAFETY: plain system call on our own fd.
        cvt(unsafe { libc::listen(self.fd(), backlog) })?;
        Ok(())
    }

    pub fn accept(&self) -> io::Result<Sock> {
        // SAFETY: NULL address pointers are allowed by accept4.
        let fd = cvt(unsafe {
            libc::accept4(
                self.fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        })?;
        Ok(Sock::adopt(fd))
    }

    pub fn set_int(&self, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
        // SAFETY: the option value is a c_int of the size we pass.
        cvt(unsafe {
            libc::setsockopt(
                self.fd(),
                level,
                opt,
                &v as *const _ as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    pub fn get_int(&self, level: libc::c_int, opt: libc::c_int) -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v/len describe a writable c_int.
        cvt(unsafe {
            libc::getsockopt(
                self.fd(),
                level,
                opt,
                &mut v as *mut _ as *mut libc::c_void,
                &mut len,
            )
        })?;
        Ok(v)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: zeroed storage is valid; getsockname fills at most len bytes.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: ss/len describe writable storage.
        cvt(unsafe {
            libc::getsockname(
                self.fd(),
                &mut ss as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        })?;
        from_raw(&ss).ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
    }

    pub fn set_nonblocking(&self) -> io::Result<()> {
        // SAFETY: fcntl on our own fd with integer arguments.
        let fl = cvt(unsafe { libc::fcntl(self.fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(self.fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
        Ok(())
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid readable slice.
        let n = unsafe {
            libc::send(
                self.fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid writable slice.
        let n = unsafe { libc::recv(self.fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    pub fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> io::Result<(usize, libc::sockaddr_storage, libc::socklen_t)> {
        // SAFETY: zeroed storage is valid; recvfrom fills at most len bytes.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: buf and ss/len are valid writable memory.
        let n = unsafe {
            libc::recvfrom(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                &mut ss as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok((n as usize, ss, len))
        }
    }

    pub fn send_to_raw(
        &self,
        buf: &[u8],
        ss: &libc::sockaddr_storage,
        len: libc::socklen_t,
    ) -> io::Result<usize> {
        // SAFETY: buf is readable; ss/len came from recvfrom.
        let n = unsafe {
            libc::sendto(
                self.fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
                ss as *const _ as *const libc::sockaddr,
                len,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Wait until `fd` is readable or `timeout_ms` passes. Ok(true) when readable.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms.max(0)) };
    r > 0
}

/// Symbolic errno name (the tools print these so tests can match them).
pub fn errno_name(e: &io::Error) -> String {
    let n = match e.raw_os_error() {
        Some(n) => n,
        None => return "EIO".to_string(),
    };
    let name = match n {
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EAGAIN => "EAGAIN",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::EINVAL => "EINVAL",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EBADF => "EBADF",
        libc::EISCONN => "EISCONN",
        libc::ENOENT => "ENOENT",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPIPE => "EPIPE",
        _ => return format!("E{n}"),
    };
    name.to_string()
}
