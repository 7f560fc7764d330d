//! Socket addresses as plain values, parsed from (and turned back into) the caller's raw
//! `sockaddr`. Parsing copies: the caller's `const sockaddr *` is never written (PITFALLS 9).

use libc::{sa_family_t, sockaddr, sockaddr_in, sockaddr_in6, socklen_t};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SockAddr {
    V4 {
        ip: [u8; 4],
        port: u16,
    },
    V6 {
        ip: [u8; 16],
        port: u16,
        flowinfo: u32,
        scope: u32,
    },
}

/// A sockaddr laid out for the kernel, on the stack.
pub struct RawAddr {
    buf: sockaddr_in6,
    len: socklen_t,
}

impl RawAddr {
    pub fn ptr(&self) -> *const sockaddr {
        (&self.buf as *const sockaddr_in6).cast()
    }
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> socklen_t {
        self.len
    }
}

const V4_LEN: socklen_t = std::mem::size_of::<sockaddr_in>() as socklen_t;
const V6_LEN: socklen_t = std::mem::size_of::<sockaddr_in6>() as socklen_t;

/// The program's address argument, copied with `sys::copy_from_program` before the kernel has
/// seen it (so a bad pointer gives the kernel's EFAULT, not a crash).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProgramAddr {
    Inet(SockAddr),
    /// AF_UNSPEC: a disconnect for connect(2).
    Unspec,
    /// Readable, but not an address we handle (short, another family): the kernel answers.
    Other,
    /// The kernel refuses it before reading the family (NULL, a length under 2 or beyond
    /// sockaddr_storage, an unreadable buffer): nothing happens to the socket.
    NotRead,
}

/// The program's address as read, with all `len` bytes of it: the real call gets this copy, so
/// the kernel connects to the very address the lock checked (another thread may change the
/// program's buffer in between), and sees exactly the bytes and length the program passed.
pub struct ProgramCopy {
    pub addr: ProgramAddr,
    buf: libc::sockaddr_storage,
    len: socklen_t,
}

impl ProgramCopy {
    pub fn ptr(&self) -> *const sockaddr {
        (&self.buf as *const libc::sockaddr_storage).cast()
    }
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> socklen_t {
        self.len
    }
}

/// The kernel accepts an AF_INET6 address without sin6_scope_id (RFC 2133 length).
const V6_LEN_RFC2133: socklen_t = 24;

impl SockAddr {
    /// Reads the program's address safely, all `len` bytes of it as the kernel would copy them
    /// (at most a sockaddr_storage), through `sys::copy_from_program`.
    ///
    /// # Safety
    /// `p`/`len` are the program's own arguments (see `sys::copy_from_program`).
    pub unsafe fn read_program(p: *const sockaddr, len: socklen_t) -> ProgramCopy {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut copy = ProgramCopy {
            addr: ProgramAddr::NotRead,
            buf: unsafe { std::mem::zeroed() },
            len: 0,
        };
        let size = std::mem::size_of::<libc::sockaddr_storage>();
        if p.is_null() || len < 2 || len as usize > size {
            return copy;
        }
        // The whole of it, as the kernel would copy it (EFAULT if any byte is unreadable).
        // SAFETY: buf is `size` >= len bytes of plain data.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                (&mut copy.buf as *mut libc::sockaddr_storage).cast::<u8>(),
                len as usize,
            )
        };
        // SAFETY: the program's own address argument of `len` bytes.
        if unsafe { crate::sys::copy_from_program(p.cast(), bytes) }.is_err() {
            return copy;
        }
        copy.len = len;
        let family = copy.buf.ss_family as i32;
        // A v6 address of the RFC 2133 length has no scope: it stays 0 in buf.
        let parse_len = if family == libc::AF_INET6 && len >= V6_LEN_RFC2133 {
            V6_LEN.max(len)
        } else {
            len
        };
        copy.addr = if family == libc::AF_UNSPEC {
            ProgramAddr::Unspec
        } else {
            // SAFETY: buf is a whole sockaddr_storage and parse_len <= its size.
            match unsafe { SockAddr::from_raw(copy.ptr(), parse_len) } {
                Some(a) => ProgramAddr::Inet(a),
                None => ProgramAddr::Other,
            }
        };
        copy
    }

    /// Parses an AF_INET or AF_INET6 address of at least the full structure size.
    /// Anything else (NULL, short, other families) is `None`: the kernel answers those.
    ///
    /// # Safety
    /// `p` must be NULL or readable for `len` bytes.
    pub unsafe fn from_raw(p: *const sockaddr, len: socklen_t) -> Option<SockAddr> {
        // The kernel refuses lengths beyond sockaddr_storage (EINVAL) before reading anything.
        if p.is_null() || len < 2 || len as usize > std::mem::size_of::<libc::sockaddr_storage>() {
            return None;
        }
        // SAFETY: at least 2 readable bytes; read_unaligned copes with any alignment.
        let family = unsafe { std::ptr::read_unaligned(p.cast::<sa_family_t>()) } as i32;
        match family {
            libc::AF_INET if len >= V4_LEN => {
                // SAFETY: len covers a sockaddr_in.
                let a: sockaddr_in = unsafe { std::ptr::read_unaligned(p.cast()) };
                Some(SockAddr::V4 {
                    ip: a.sin_addr.s_addr.to_ne_bytes(),
                    port: u16::from_be(a.sin_port),
                })
            }
            libc::AF_INET6 if len >= V6_LEN => {
                // SAFETY: len covers a sockaddr_in6.
                let a: sockaddr_in6 = unsafe { std::ptr::read_unaligned(p.cast()) };
                Some(SockAddr::V6 {
                    ip: a.sin6_addr.s6_addr,
                    port: u16::from_be(a.sin6_port),
                    flowinfo: a.sin6_flowinfo,
                    scope: a.sin6_scope_id,
                })
            }
            _ => None,
        }
    }

    /// The address family of a raw sockaddr (for AF_UNSPEC checks), if at least 2 bytes.
    ///
    /// # Safety
    /// `p` must be NULL or readable for `len` bytes.
    pub unsafe fn family_of(p: *const sockaddr, len: socklen_t) -> Option<i32> {
        if p.is_null() || len < 2 {
            return None;
        }
        // SAFETY: two readable bytes.
        Some(unsafe { std::ptr::read_unaligned(p.cast::<sa_family_t>()) } as i32)
    }

    pub fn to_raw(&self) -> RawAddr {
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut buf: sockaddr_in6 = unsafe { std::mem::zeroed() };
        match *self {
            SockAddr::V4 { ip, port } => {
                let mut a: sockaddr_in = unsafe { std::mem::zeroed() };
                a.sin_family = libc::AF_INET as sa_family_t;
                a.sin_port = port.to_be();
                a.sin_addr.s_addr = u32::from_ne_bytes(ip);
                // SAFETY: sockaddr_in fits inside sockaddr_in6.
                unsafe { std::ptr::write_unaligned((&mut buf as *mut sockaddr_in6).cast(), a) };
                RawAddr { buf, len: V4_LEN }
            }
            SockAddr::V6 {
                ip,
                port,
                flowinfo,
                scope,
            } => {
                buf.sin6_family = libc::AF_INET6 as sa_family_t;
                buf.sin6_port = port.to_be();
                buf.sin6_flowinfo = flowinfo;
                buf.sin6_addr.s6_addr = ip;
                buf.sin6_scope_id = scope;
                RawAddr { buf, len: V6_LEN }
            }
        }
    }

    pub fn is_v6(&self) -> bool {
        matches!(self, SockAddr::V6 { .. })
    }

    pub fn port(&self) -> u16 {
        match *self {
            SockAddr::V4 { port, .. } | SockAddr::V6 { port, .. } => port,
        }
    }

    pub fn with_port(mut self, p: u16) -> SockAddr {
        match &mut self {
            SockAddr::V4 { port, .. } | SockAddr::V6 { port, .. } => *port = p,
        }
        self
    }

    /// 0.0.0.0 or :: (the program left the source address to the kernel).
    pub fn is_unspecified(&self) -> bool {
        match self {
            SockAddr::V4 { ip, .. } => *ip == [0; 4],
            SockAddr::V6 { ip, .. } => *ip == [0; 16],
        }
    }

    /// The IPv4 address inside ::ffff:a.b.c.d, if this is one.
    pub fn v4_mapped(&self) -> Option<[u8; 4]> {
        match self {
            SockAddr::V6 { ip, .. } if ip[..10] == [0; 10] && ip[10] == 0xff && ip[11] == 0xff => {
                Some([ip[12], ip[13], ip[14], ip[15]])
            }
            _ => None,
        }
    }

    /// The address as the IPv4 stack sees it: v4 itself or the v4 inside a v4-mapped v6.
    pub fn as_v4(&self) -> Option<[u8; 4]> {
        match self {
            SockAddr::V4 { ip, .. } => Some(*ip),
            v6 => v6.v4_mapped(),
        }
    }

    pub fn scope(&self) -> u32 {
        match self {
            SockAddr::V6 { scope, .. } => *scope,
            _ => 0,
        }
    }

    /// ::ffff:ip with the given port, for a dual-stack IPv6 socket talking to IPv4.
    pub fn mapped(ip: [u8; 4], port: u16) -> SockAddr {
        let mut v6 = [0u8; 16];
        v6[10] = 0xff;
        v6[11] = 0xff;
        v6[12..].copy_from_slice(&ip);
        SockAddr::V6 {
            ip: v6,
            port,
            flowinfo: 0,
            scope: 0,
        }
    }

    /// Packs into four words for lock-free per-socket storage.
    pub fn to_words(&self) -> [u64; 4] {
        match *self {
            SockAddr::V4 { ip, port } => {
                [4 | (port as u64) << 8, u32::from_ne_bytes(ip) as u64, 0, 0]
            }
            SockAddr::V6 {
                ip,
                port,
                flowinfo,
                scope,
            } => {
                let mut hi = [0u8; 8];
                let mut lo = [0u8; 8];
                hi.copy_from_slice(&ip[..8]);
                lo.copy_from_slice(&ip[8..]);
                [
                    6 | (port as u64) << 8 | (scope as u64) << 32,
                    u64::from_ne_bytes(hi),
                    u64::from_ne_bytes(lo),
                    flowinfo as u64,
                ]
            }
        }
    }

    pub fn from_words(w: [u64; 4]) -> Option<SockAddr> {
        let port = (w[0] >> 8) as u16;
        match w[0] & 0xff {
            4 => Some(SockAddr::V4 {
                ip: (w[1] as u32).to_ne_bytes(),
                port,
            }),
            6 => {
                let mut ip = [0u8; 16];
                ip[..8].copy_from_slice(&w[1].to_ne_bytes());
                ip[8..].copy_from_slice(&w[2].to_ne_bytes());
                Some(SockAddr::V6 {
                    ip,
                    port,
                    flowinfo: w[3] as u32,
                    scope: (w[0] >> 32) as u32,
                })
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockAddr::V4 { ip, port } => {
                write!(f, "{}.{}.{}.{}:{}", ip[0], ip[1], ip[2], ip[3], port)
            }
            SockAddr::V6 {
                ip, port, scope, ..
            } => {
                f.write_str("[")?;
                for i in 0..8 {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{:x}", u16::from_be_bytes([ip[2 * i], ip[2 * i + 1]]))?;
                }
                if *scope != 0 {
                    write!(f, "%{scope}")?;
                }
                write!(f, "]:{port}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_raw_and_words() {
        let a = SockAddr::V4 {
            ip: [127, 0, 0, 3],
            port: 40001,
        };
        let r = a.to_raw();
        assert_eq!(unsafe { SockAddr::from_raw(r.ptr(), r.len()) }, Some(a));
        assert_eq!(SockAddr::from_words(a.to_words()), Some(a));
        let b = SockAddr::V6 {
            ip: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            port: 53,
            flowinfo: 7,
            scope: 2,
        };
        let r = b.to_raw();
        assert_eq!(unsafe { SockAddr::from_raw(r.ptr(), r.len()) }, Some(b));
        assert_eq!(SockAddr::from_words(b.to_words()), Some(b));
    }

    #[test]
    fn short_null_and_foreign_addresses_are_left_to_the_kernel() {
        let a = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 1,
        }
        .to_raw();
        assert_eq!(unsafe { SockAddr::from_raw(a.ptr(), a.len() - 1) }, None);
        assert_eq!(unsafe { SockAddr::from_raw(std::ptr::null(), 16) }, None);
        let unix = [1u8, 0, b'/', b'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            unsafe { SockAddr::from_raw(unix.as_ptr().cast(), 16) },
            None
        );
    }

    #[test]
    fn v4_mapped_is_recognised() {
        let m = SockAddr::mapped([127, 0, 0, 2], 9);
        assert_eq!(m.v4_mapped(), Some([127, 0, 0, 2]));
        assert_eq!(m.as_v4(), Some([127, 0, 0, 2]));
        assert_eq!(format!("{m}"), "[0:0:0:0:0:ffff:7f00:2]:9");
        assert!(
            SockAddr::V6 {
                ip: [0; 16],
                port: 0,
                flowinfo: 0,
                scope: 0
            }
            .is_unspecified()
        );
    }
}
