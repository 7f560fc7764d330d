//! The two kernel questions the UDP lock asks, over netlink, with messages built on the stack:
//! - SOCK_DIAG exact lookup: which socket would receive a datagram from `remote` to `local`?
//! - SOCK_DIAG dump of one port: who holds it (connected or not, listening or not)?
//! - RTM_GETROUTE: which source address would the kernel use for `dst` (without using a port)?
//!
//! Netlink sockets come from a small per-process pool: taken with an atomic flag (never waits;
//! all busy -> a temporary socket, recorded while it lives). Each is the library's own fd
//! (ownfd: high number, close-on-exec, identity checked before every use), valid only in the
//! process that made it (a netlink socket's port id belongs to the process that bound it: fork
//! children drop them in the fork handler, `_Fork`/`clone` children at their first use) and in
//! its network namespace (`Ns::Of`: asked in the namespace of the program's socket).
//! Forgotten when the program closes their fd number. Facts: KERNEL.md "SOCK_DIAG for UDP";
//! lab/diag.py.

use crate::addr::SockAddr;
use crate::sys::{KeepErrno, errno};
use crate::{ownfd, real};
use libc::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::*};

const NETLINK_SOCK_DIAG: c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_PREFSRC: u16 = 7;
const RTA_MARK: u16 = 16;
const RTA_IP_PROTO: u16 = 27;
const RTA_DPORT: u16 = 29;
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_CLOSE: u8 = 7;
pub const TCP_LISTEN: u8 = 10;
const ALL_STATES: u32 = 0xffff_ffff;
const NO_COOKIE: u64 = u64::MAX;

static SEQ: AtomicU32 = AtomicU32::new(1);

/// One of our netlink sockets, with what it was made in and how to recognise it.
struct Slot {
    fd_plus_one: AtomicI32,
    busy: AtomicBool,
    /// The process that made it (a `_Fork()` or raw `clone` child runs no fork handler).
    pid: AtomicI32,
    /// SO_COOKIE (ownfd::socket_ident) at creation: the number is ours only while it matches.
    ident: AtomicU64,
    /// Its network namespace (ownfd::netns_of).
    netns: AtomicU64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            fd_plus_one: AtomicI32::new(0),
            busy: AtomicBool::new(false),
            pid: AtomicI32::new(0),
            ident: AtomicU64::new(0),
            netns: AtomicU64::new(0),
        }
    }

    fn fd(&self) -> c_int {
        self.fd_plus_one.load(Acquire) - 1
    }

    /// Drops the record; closes the fd only if it is still the socket we made.
    fn release_fd(&self) {
        // Closed and unrecorded inside the fork gate: a child never inherits it unrecorded.
        let _gate = ownfd::Opening::enter();
        let fd = self.fd();
        ownfd::close_if_ours(fd, self.ident.load(Relaxed));
        self.fd_plus_one.store(0, Release);
        self.pid.store(0, Relaxed);
    }

    /// Opens a socket into this (busy, empty) slot, in the calling thread's namespace.
    fn open(&self, protocol: c_int, pid: c_int) -> Result<c_int, c_int> {
        // Inside the fork gate: a child never inherits a socket we have not recorded yet (and
        // none is made while forks keep the gate closed: the caller's EAGAIN).
        let _gate = ownfd::Opening::try_enter().ok_or(libc::EAGAIN)?;
        let _keep = KeepErrno::new();
        // SAFETY: plain socket(2) through the real function.
        let fd = unsafe {
            real::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        let fd = ownfd::move_high(fd);
        if self.fd() >= 0 {
            // Never orphan a socket of ours: one still recorded here is closed first.
            let old = self.fd();
            ownfd::close_if_ours(old, self.ident.load(Relaxed));
        }
        let Some(ident) = ownfd::socket_ident(fd) else {
            crate::sys::close(fd);
            return Err(libc::EIO);
        };
        self.pid.store(pid, Relaxed);
        self.ident.store(ident, Relaxed);
        self.netns.store(ownfd::netns_of(fd), Relaxed);
        note_number(fd);
        self.fd_plus_one.store(fd + 1, Release);
        Ok(fd)
    }

    /// The slot's socket, if it is ours, of this process and of namespace `want` (0: any).
    fn usable(&self, pid: c_int, want: u64) -> Option<c_int> {
        let fd = self.fd();
        if fd < 0 {
            return None;
        }
        if self.pid.load(Relaxed) != pid {
            // Inherited from the parent without a fork handler: the parent's port id.
            self.release_fd();
            return None;
        }
        if ownfd::socket_ident(fd) != Some(self.ident.load(Relaxed)) {
            // Closed behind our back and the number reused: not ours to touch, forget it.
            let _ = self
                .fd_plus_one
                .compare_exchange(fd + 1, 0, AcqRel, Relaxed);
            return None;
        }
        if want != 0 && self.netns.load(Relaxed) != want {
            return None;
        }
        Some(fd)
    }
}

const POOLED: usize = 4;
const TEMPS: usize = 32;

struct Pool {
    protocol: c_int,
    slots: [Slot; POOLED],
}

static DIAG: Pool = Pool::new(NETLINK_SOCK_DIAG);
static ROUTE: Pool = Pool::new(libc::NETLINK_ROUTE);
/// Temporary sockets (every pooled one busy, or a dump), recorded while they live so that a
/// child forked meanwhile closes its copies.
static TEMP: [Slot; TEMPS] = [const { Slot::new() }; TEMPS];
/// The lowest number any of our sockets got: closes below it need no look at the tables.
static LOWEST: AtomicI32 = AtomicI32::new(i32::MAX);
/// The process the tables belong to; -pid while a `_Fork()` child sweeps its parent's entries.
static OWNER: AtomicI32 = AtomicI32::new(0);

fn note_number(fd: c_int) {
    LOWEST.fetch_min(fd, Relaxed);
}

fn all_slots() -> impl Iterator<Item = &'static Slot> {
    DIAG.slots
        .iter()
        .chain(ROUTE.slots.iter())
        .chain(TEMP.iter())
        .chain(std::iter::once(&DUMP))
}

/// Which namespace a request must be answered in.
#[derive(Clone, Copy, Debug)]
pub enum Ns {
    /// The namespace of the program's socket `fd` (SO_NETNS_COOKIE).
    Of(c_int),
    /// A namespace whose SO_NETNS_COOKIE the caller knows already (a socket's never changes).
    Known(u64),
    /// Wherever the pooled socket is (callers without a socket).
    Any,
}

/// The namespaces differ and no socket of the right one can be had here: the caller falls back
/// to the kernel's own behaviour.
pub const WRONG_NETNS: c_int = libc::EXDEV;

impl Pool {
    const fn new(protocol: c_int) -> Pool {
        Pool {
            protocol,
            slots: [const { Slot::new() }; POOLED],
        }
    }

    fn take(&'static self, ns: Ns) -> Result<Lease, c_int> {
        let pid = adopt()?;
        let want = wanted(ns);
        // A free pooled socket of the right process and namespace…
        for s in &self.slots {
            if !s.busy.swap(true, Acquire) {
                if let Some(fd) = s.usable(pid, want) {
                    return Ok(Lease {
                        fd,
                        slot: s,
                        temp: false,
                    });
                }
                s.busy.store(false, Release);
            }
        }
        // …else a free slot rebuilt (or a temporary one when all are busy), in this thread's
        // namespace, which must then be the one wanted.
        let (slot, temp) = match self.slots.iter().find(|s| !s.busy.swap(true, Acquire)) {
            Some(s) => {
                s.release_fd();
                (s, false)
            }
            None => (
                TEMP.iter()
                    .find(|s| !s.busy.swap(true, Acquire))
                    .ok_or(libc::EAGAIN)?,
                true,
            ),
        };
        self.open_into(slot, pid, want, temp)
    }

    /// A socket of its own for a dump (many datagrams: never drain a pooled one).
    fn temporary(&'static self, ns: Ns) -> Result<Lease, c_int> {
        let pid = adopt()?;
        let want = wanted(ns);
        let slot = TEMP
            .iter()
            .find(|s| !s.busy.swap(true, Acquire))
            .ok_or(libc::EAGAIN)?;
        self.open_into(slot, pid, want, true)
    }

    fn open_into(
        &self,
        slot: &'static Slot,
        pid: c_int,
        want: u64,
        temp: bool,
    ) -> Result<Lease, c_int> {
        match slot.open(self.protocol, pid) {
            Ok(fd) if want == 0 || slot.netns.load(Relaxed) == want => Ok(Lease { fd, slot, temp }),
            r => {
                if r.is_ok() {
                    slot.release_fd();
                }
                slot.busy.store(false, Release);
                Err(r.err().unwrap_or(WRONG_NETNS))
            }
        }
    }
}

impl Ns {
    /// The namespace of socket `fd`, whose SO_NETNS_COOKIE is `cookie` if known (0: ask).
    pub fn of_known(fd: c_int, cookie: u64) -> Ns {
        if cookie != 0 {
            Ns::Known(cookie)
        } else {
            Ns::Of(fd)
        }
    }
}

fn wanted(ns: Ns) -> u64 {
    match ns {
        Ns::Known(cookie) => cookie,
        Ns::Of(fd) => ownfd::netns_of(fd),
        Ns::Any => 0,
    }
}

/// This process's pid, after dropping whatever the tables hold from a parent that made this
/// process without running fork handlers (`_Fork()`, raw `clone`). Err while another thread of
/// the new process does that (the caller falls back to the kernel for this one call).
fn adopt() -> Result<c_int, c_int> {
    // SAFETY: no preconditions (and glibc does not cache it: right in a `_Fork` child).
    let pid = unsafe { libc::getpid() };
    let owner = OWNER.load(Acquire);
    if owner == pid {
        return Ok(pid);
    }
    if owner == -pid
        || OWNER
            .compare_exchange(owner, -pid, AcqRel, Acquire)
            .is_err()
    {
        return Err(libc::EAGAIN);
    }
    sweep();
    OWNER.store(pid, Release);
    Ok(pid)
}

/// Closes every socket recorded (our copies of the parent's) and frees every slot: only this
/// thread runs in the new process yet, so every lease was the parent's.
fn sweep() {
    for s in all_slots() {
        s.release_fd();
        s.busy.store(false, Release);
    }
}

/// A netlink socket borrowed from a pool (or a temporary one), given back on drop.
struct Lease {
    fd: c_int,
    slot: &'static Slot,
    temp: bool,
}

impl Lease {
    /// The socket misbehaved: close it and let the pool open a new one next time.
    fn discard(mut self) {
        self.temp = true;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.temp {
            // Still recorded with our fd: nobody closed it under us.
            if self.slot.fd() == self.fd {
                self.slot.release_fd();
            }
        }
        self.slot.busy.store(false, Release);
    }
}

static DIAG_CHECKED: AtomicBool = AtomicBool::new(false);

/// Opens (once per process) the pooled SOCK_DIAG socket, to learn early whether this process may
/// use SOCK_DIAG at all (a seccomp filter or an LSM may forbid AF_NETLINK).
pub fn check_diag() -> Result<(), c_int> {
    if DIAG_CHECKED.load(Relaxed) {
        return Ok(());
    }
    let _keep = KeepErrno::new();
    drop(DIAG.take(Ns::Any)?);
    DIAG_CHECKED.store(true, Relaxed);
    Ok(())
}

/// At load: the tables belong to this process (so the first calls need not adopt them).
pub fn adopt_now() {
    // SAFETY: no preconditions.
    OWNER.store(unsafe { libc::getpid() }, Release);
}

/// Called in the child after fork (pthread_atfork): the sockets are the parent's (their port
/// id), and the threads that held leases are gone.
pub fn after_fork_in_child() {
    // SAFETY: no preconditions.
    let pid = unsafe { libc::getpid() };
    sweep();
    OWNER.store(pid, Release);
}

/// The program is closing `fd`: if it was one of ours, stop using that number.
pub fn forget_fd(fd: c_int) {
    if fd < LOWEST.load(Relaxed) {
        return;
    }
    for s in all_slots() {
        // A plain load first: every close of the program comes through here.
        if s.fd_plus_one.load(Relaxed) == fd + 1 {
            let _ = s.fd_plus_one.compare_exchange(fd + 1, 0, AcqRel, Relaxed);
        }
    }
}

/// close_range(first, last) or closefrom(first) swept over our numbers too.
pub fn forget_range(first: u32, last: u32) {
    if last < LOWEST.load(Relaxed).max(0) as u32 {
        return;
    }
    for s in all_slots() {
        let fd = s.fd();
        if fd >= 0 && (first..=last).contains(&(fd as u32)) {
            let _ = s.fd_plus_one.compare_exchange(fd + 1, 0, AcqRel, Relaxed);
        }
    }
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_ne_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}
fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn nlmsghdr(b: &mut [u8], len: usize, ty: u16, flags: u16, seq: u32) {
    put_u32(b, 0, len as u32);
    put_u16(b, 4, ty);
    put_u16(b, 6, flags);
    put_u32(b, 8, seq);
    put_u32(b, 12, 0);
}

/// The 16 address bytes of inet_diag_sockid for `a` as seen by `family`'s stack.
fn diag_ip(a: &SockAddr, family: c_int) -> [u8; 16] {
    let mut out = [0u8; 16];
    match (family, a) {
        (libc::AF_INET, _) => out[..4].copy_from_slice(&a.as_v4().unwrap_or([0; 4])),
        (_, SockAddr::V6 { ip, .. }) => out = *ip,
        (_, SockAddr::V4 { ip, .. }) => out[..4].copy_from_slice(ip),
    }
    out
}

pub const DIAG_REQ_LEN: usize = 16 + 8 + 48;

/// inet_diag_req_v2. In an exact lookup the kernel reads id.src/sport as the REMOTE end and
/// id.dst/dport as the LOCAL end (KERNEL.md); a dump filters on id.sport/dport as given.
#[allow(clippy::too_many_arguments)]
pub fn diag_request(
    b: &mut [u8; DIAG_REQ_LEN],
    seq: u32,
    flags: u16,
    family: c_int,
    protocol: c_int,
    src: (&[u8; 16], u16),
    dst: (&[u8; 16], u16),
    ifindex: u32,
) {
    nlmsghdr(b, DIAG_REQ_LEN, SOCK_DIAG_BY_FAMILY, flags, seq);
    b[16] = family as u8;
    b[17] = protocol as u8;
    b[18] = 0;
    b[19] = 0;
    put_u32(b, 20, ALL_STATES);
    b[24..26].copy_from_slice(&src.1.to_be_bytes());
    b[26..28].copy_from_slice(&dst.1.to_be_bytes());
    b[28..44].copy_from_slice(src.0);
    b[44..60].copy_from_slice(dst.0);
    put_u32(b, 60, ifindex);
    put_u32(b, 64, NO_COOKIE as u32);
    put_u32(b, 68, (NO_COOKIE >> 32) as u32);
}

/// What one inet_diag_msg says about a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub state: u8,
    pub local_port: u16,
    pub cookie: u64,
    pub family: u8,
    pub remote_port: u16,
    /// The 16 address bytes of inet_diag_sockid's dst (IPv4 in the first 4).
    pub remote_ip: [u8; 16],
}

impl Found {
    /// Connected to `peer`: its address, and its port or port 0 (a sentinel, which the kernel's
    /// lookup matches for any port of the peer). A lookup can also name a connected socket of
    /// another peer: the member a reuseport group picked for a lookup whose best match was an
    /// unconnected group member (another connect's lock between its bind and its lock). That
    /// socket says nothing about this 4-tuple.
    pub fn connected_to(&self, peer: &SockAddr) -> bool {
        if self.state != TCP_ESTABLISHED || self.remote_port != 0 && self.remote_port != peer.port()
        {
            return false;
        }
        let found_v4 = if self.family == libc::AF_INET as u8 {
            Some([
                self.remote_ip[0],
                self.remote_ip[1],
                self.remote_ip[2],
                self.remote_ip[3],
            ])
        } else if self.remote_ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
            Some([
                self.remote_ip[12],
                self.remote_ip[13],
                self.remote_ip[14],
                self.remote_ip[15],
            ])
        } else {
            None
        };
        match (found_v4, peer.as_v4(), peer) {
            (Some(f), Some(p), _) => f == p,
            (None, None, SockAddr::V6 { ip, .. }) => self.remote_ip == *ip,
            _ => false,
        }
    }
}

/// Parses an inet_diag_msg at `at` (just after the nlmsghdr).
pub fn parse_diag_msg(b: &[u8], at: usize) -> Option<Found> {
    if b.len() < at + 4 + 48 {
        return None;
    }
    let state = b[at + 1];
    let local_port = u16::from_be_bytes([b[at + 4], b[at + 5]]);
    // The cookie comes as two 32-bit halves, low half first.
    let cookie = get_u32(b, at + 44) as u64 | (get_u32(b, at + 48) as u64) << 32;
    let mut remote_ip = [0u8; 16];
    remote_ip.copy_from_slice(&b[at + 24..at + 40]);
    Some(Found {
        state,
        local_port,
        cookie,
        family: b[at],
        remote_port: u16::from_be_bytes([b[at + 6], b[at + 7]]),
        remote_ip,
    })
}

fn send(fd: c_int, msg: &[u8]) -> Result<(), c_int> {
    // SAFETY: msg is a valid buffer; a NULL address sends to the kernel.
    let n = unsafe { real::sendto(fd, msg.as_ptr().cast(), msg.len(), 0, std::ptr::null(), 0) };
    if n < 0 { Err(errno()) } else { Ok(()) }
}

/// Receives one datagram. The kernel answers these requests while we are in sendto, so the reply
/// is already queued: MSG_DONTWAIT never waits, and EAGAIN means no answer.
fn recv(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: buf is writable for its length.
    let n = unsafe { real::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n < 0 { Err(errno()) } else { Ok(n as usize) }
}

/// Reads replies until one carries `seq` (stale replies of an abandoned request are skipped).
fn reply_for(fd: c_int, seq: u32, buf: &mut [u8]) -> Result<usize, c_int> {
    for _ in 0..8 {
        let n = recv(fd, buf)?;
        if n >= 16 && get_u32(buf, 8) == seq {
            return Ok(n);
        }
    }
    Err(libc::EIO)
}

fn error_of(buf: &[u8]) -> c_int {
    -(get_u32(buf, 16) as i32)
}

/// Exact lookup, asked in namespace `ns` (that of the program's socket: Err(WRONG_NETNS) when
/// no netlink socket of that namespace can be had): the socket that would receive a datagram
/// sent by `remote` to `local` arriving on interface `ifindex` (0: the address's scope; a socket
/// bound to another device does not match, so give the interface replies come in by).
/// Ok(None) when no socket would (ENOENT).
pub fn udp_exact(
    ns: Ns,
    local: &SockAddr,
    remote: &SockAddr,
    ifindex: u32,
) -> Result<Option<Found>, c_int> {
    let ifindex = if ifindex != 0 {
        ifindex
    } else {
        local.scope().max(remote.scope())
    };
    // In a UDP exact lookup the kernel reads id.src as the REMOTE end (KERNEL.md).
    exact(ns, libc::IPPROTO_UDP, (remote, local), ifindex)
}

/// One exact lookup (no NLM_F_DUMP): the socket the kernel's own lookup finds for `id` (as
/// id.src, id.dst), Ok(None) for ENOENT.
fn exact(
    ns: Ns,
    protocol: c_int,
    id: (&SockAddr, &SockAddr),
    ifindex: u32,
) -> Result<Option<Found>, c_int> {
    let _keep = KeepErrno::new();
    let (src, dst) = id;
    let family = if src.as_v4().is_some() && dst.as_v4().is_some() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let seq = SEQ.fetch_add(1, Relaxed);
    let mut req = [0u8; DIAG_REQ_LEN];
    diag_request(
        &mut req,
        seq,
        NLM_F_REQUEST,
        family,
        protocol,
        (&diag_ip(src, family), src.port()),
        (&diag_ip(dst, family), dst.port()),
        ifindex,
    );
    let lease = DIAG.take(ns)?;
    let mut buf = [0u8; 512];
    let n = match send(lease.fd, &req).and_then(|_| reply_for(lease.fd, seq, &mut buf)) {
        Ok(n) => n,
        Err(e) => {
            lease.discard();
            return Err(e);
        }
    };
    match get_u16(&buf, 4) {
        NLMSG_ERROR if error_of(&buf) == libc::ENOENT => Ok(None),
        NLMSG_ERROR => Err(error_of(&buf)),
        SOCK_DIAG_BY_FAMILY => parse_diag_msg(&buf[..n], 16).map(Some).ok_or(libc::EIO),
        _ => Err(libc::EIO),
    }
}

/// TCP exact lookup: the state of the socket that holds the 4-tuple `local` -> `remote` (a
/// connection or a TIME_WAIT; a listener on `local` is found too), None if no socket does. For
/// TCP the kernel reads id.src/sport as the LOCAL end (inet_diag_find_one_icsk), the opposite
/// of UDP.
pub fn tcp_holder(ns: Ns, local: &SockAddr, remote: &SockAddr) -> Result<Option<u8>, c_int> {
    let ifindex = local.scope().max(remote.scope());
    Ok(exact(ns, libc::IPPROTO_TCP, (local, remote), ifindex)?.map(|f| f.state))
}

/// Who holds a local port, from a dump filtered on it (rare paths only: a dump walks the table).
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holders {
    /// TCP: not listening and not closed (connections and TIME_WAIT). UDP: connected.
    pub flows: u32,
    pub listening: u32,
    /// UDP: bound but not connected (a server, or a socket between bind and connect).
    pub unconnected: u32,
    /// UDP: connected, but not a connectx flow of this user (`udp::consent`).
    pub foreign: u32,
}

pub fn holders(ns: Ns, protocol: c_int, family: c_int, port: u16) -> Result<Holders, c_int> {
    let _keep = KeepErrno::new();
    let seq = SEQ.fetch_add(1, Relaxed);
    let mut req = [0u8; DIAG_REQ_LEN];
    diag_request(
        &mut req,
        seq,
        NLM_F_REQUEST | NLM_F_DUMP,
        family,
        protocol,
        (&[0; 16], port),
        (&[0; 16], 0),
        0,
    );
    // A dump answers in many datagrams: use a socket of its own rather than drain a pooled one.
    let lease = DIAG.temporary(ns)?;
    send(lease.fd, &req)?;
    let mut h = Holders::default();
    let mut buf = [0u8; 8192];
    for _ in 0..100_000 {
        // Blocking read: a dump may come in several rounds.
        // SAFETY: buf is writable for its length.
        let n = unsafe { real::recv(lease.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return Err(if n < 0 { errno() } else { libc::EIO });
        }
        let n = n as usize;
        let mut at = 0;
        while at + 16 <= n {
            let len = get_u32(&buf, at) as usize;
            match get_u16(&buf, at + 4) {
                NLMSG_DONE => return Ok(h),
                NLMSG_ERROR => return Err(error_of(&buf[at..])),
                SOCK_DIAG_BY_FAMILY => match parse_dumped(&buf[at + 16..(at + len).min(n)]) {
                    Some(f) if f.local_port == port => match f.state {
                        TCP_LISTEN => h.listening += 1,
                        TCP_CLOSE => h.unconnected += 1,
                        _ => {
                            h.flows += 1;
                            // SAFETY: no arguments.
                            let me = unsafe { libc::geteuid() };
                            if protocol == libc::IPPROTO_UDP
                                && (f.uid != me || f.no_port != Some(true))
                            {
                                h.foreign += 1;
                            }
                        }
                    },
                    _ => {}
                },
                _ => {}
            }
            if len < 16 {
                return Err(libc::EIO);
            }
            at += (len + 3) & !3;
        }
    }
    Err(libc::EIO)
}

/// One UDP socket as a dump tells it: what the UDP lock's consent rule needs (`udp::consent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dumped {
    pub family: c_int,
    pub state: u8,
    pub local_port: u16,
    pub remote_port: u16,
    /// The 16 address bytes of inet_diag_sockid (IPv4 in the first 4).
    pub local_ip: [u8; 16],
    pub uid: u32,
    /// INET_DIAG_SOCKOPT's bind_address_no_port (Linux 5.10+; None where the kernel has no such
    /// attribute): connectx's mark of a flow it shares.
    pub no_port: Option<bool>,
}

const INET_DIAG_SOCKOPT: u16 = 22;

/// Parses one dumped inet_diag_msg and its attributes (`msg` = the netlink message without its
/// 16-byte header).
pub fn parse_dumped(msg: &[u8]) -> Option<Dumped> {
    if msg.len() < 72 {
        return None;
    }
    let mut local_ip = [0u8; 16];
    local_ip.copy_from_slice(&msg[8..24]);
    let mut no_port = None;
    let mut at = 72;
    while at + 4 <= msg.len() {
        let len = get_u16(msg, at) as usize;
        if len < 4 || at + len > msg.len() {
            break;
        }
        if get_u16(msg, at + 2) == INET_DIAG_SOCKOPT && len >= 6 {
            // struct inet_diag_sockopt: bind_address_no_port is bit 0 of the second byte.
            no_port = Some(msg[at + 5] & 1 != 0);
        }
        at += (len + 3) & !3;
    }
    Some(Dumped {
        family: msg[0] as c_int,
        state: msg[1],
        local_port: u16::from_be_bytes([msg[4], msg[5]]),
        remote_port: u16::from_be_bytes([msg[6], msg[7]]),
        local_ip,
        uid: get_u32(msg, 64),
        no_port,
    })
}

/// The socket of a dump read over several calls (`udp::consent` builds its view a slice per
/// connect, so that no connect pays for a whole dump of a large table). One per process, taken
/// with `DumpLease::take`; recorded like every socket of ours (fork, close_range, reuse checks).
static DUMP: Slot = Slot::new();

/// The right to use the dump socket, given back on drop (the socket and its dump stay open).
/// Its token is checked at every use: a lease that is no longer the one in force (the slots
/// swept, another taker since) touches nothing.
pub struct DumpLease(u64);

static DUMP_TOKEN: AtomicU64 = AtomicU64::new(0);
static DUMP_TOKENS: AtomicU64 = AtomicU64::new(1);

impl DumpLease {
    pub fn take() -> Option<DumpLease> {
        if DUMP.busy.swap(true, Acquire) {
            return None;
        }
        let token = DUMP_TOKENS.fetch_add(1, Relaxed);
        DUMP_TOKEN.store(token, Release);
        Some(DumpLease(token))
    }

    fn in_force(&self) -> bool {
        DUMP_TOKEN.load(Acquire) == self.0
    }

    /// Starts a dump of every UDP socket of `family` in namespace `ns`, on a fresh socket (a dump
    /// under way on the old one is dropped with it).
    pub fn start(&self, ns: Ns, family: c_int) -> Result<(), c_int> {
        let _keep = KeepErrno::new();
        let pid = adopt()?;
        if !self.in_force() {
            return Err(libc::EAGAIN);
        }
        if DUMP.fd() >= 0 {
            DUMP.release_fd();
        }
        let fd = DUMP.open(NETLINK_SOCK_DIAG, pid)?;
        let want = wanted(ns);
        if want != 0 && DUMP.netns.load(Relaxed) != want {
            DUMP.release_fd();
            return Err(WRONG_NETNS);
        }
        let seq = SEQ.fetch_add(1, Relaxed);
        let mut req = [0u8; DIAG_REQ_LEN];
        diag_request(
            &mut req,
            seq,
            NLM_F_REQUEST | NLM_F_DUMP,
            family,
            libc::IPPROTO_UDP,
            (&[0; 16], 0),
            (&[0; 16], 0),
            0,
        );
        send(fd, &req).inspect_err(|_| DUMP.release_fd())
    }

    /// Reads the dump under way, giving each socket to `f`, until it ends (Ok(true)) or
    /// `more()` says stop (Ok(false): go on next time). Err: the dump is lost (start again).
    pub fn read(
        &self,
        more: &mut dyn FnMut() -> bool,
        f: &mut dyn FnMut(&Dumped),
    ) -> Result<bool, c_int> {
        let _keep = KeepErrno::new();
        let pid = adopt()?;
        if !self.in_force() {
            return Err(libc::EAGAIN);
        }
        let Some(fd) = DUMP.usable(pid, 0) else {
            return Err(libc::EIO);
        };
        let mut buf = [0u8; 16384];
        loop {
            // The kernel fills the next part of a dump while the previous one is read: it is
            // queued already, and MSG_DONTWAIT never waits.
            let n = match recv(fd, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    DUMP.release_fd();
                    return Err(e);
                }
            };
            let mut at = 0;
            while at + 16 <= n {
                let len = get_u32(&buf, at) as usize;
                if len < 16 || at + len > n {
                    DUMP.release_fd();
                    return Err(libc::EIO);
                }
                match get_u16(&buf, at + 4) {
                    NLMSG_DONE => {
                        DUMP.release_fd();
                        return Ok(true);
                    }
                    NLMSG_ERROR => {
                        DUMP.release_fd();
                        return Err(error_of(&buf[at..]));
                    }
                    SOCK_DIAG_BY_FAMILY => {
                        if let Some(d) = parse_dumped(&buf[at + 16..at + len]) {
                            f(&d);
                        }
                    }
                    _ => {}
                }
                at += (len + 3) & !3;
            }
            if !more() {
                return Ok(false);
            }
        }
    }
}

impl Drop for DumpLease {
    fn drop(&mut self) {
        if DUMP_TOKEN
            .compare_exchange(self.0, 0, AcqRel, Acquire)
            .is_ok()
        {
            DUMP.busy.store(false, Release);
        }
    }
}

/// The holders of `port` over the families that conflict with a socket of this family (a
/// dual-stack IPv6 socket also conflicts with IPv4 holders), asked in the network namespace of
/// the program's socket `sock`.
pub fn port_holders_for(
    sock: c_int,
    protocol: c_int,
    v6: bool,
    port: u16,
) -> Result<Holders, c_int> {
    port_holders_in(Ns::Of(sock), protocol, v6, port)
}

fn port_holders_in(ns: Ns, protocol: c_int, v6: bool, port: u16) -> Result<Holders, c_int> {
    let families: &[c_int] = if v6 {
        &[libc::AF_INET6, libc::AF_INET]
    } else {
        &[libc::AF_INET]
    };
    let mut sum = Holders::default();
    for &f in families {
        let h = holders(ns, protocol, f, port)?;
        sum.flows += h.flows;
        sum.listening += h.listening;
        sum.unconnected += h.unconnected;
        sum.foreign += h.foreign;
    }
    Ok(sum)
}

/// What the kernel's route lookup for a socket's connect depends on besides the destination:
/// the socket's bound device, mark and TOS, and the ports and protocol (policy routing by
/// `ip rule ... dport/ipproto/fwmark/tos`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteContext {
    pub oif: u32,
    pub mark: u32,
    pub tos: u8,
}

pub const ROUTE_REQ_MAX: usize = 16 + 12 + 20 + 8 + 8 + 8 + 8;

/// RTM_GETROUTE for a UDP flow to `dst` with the socket's context. Returns the message length.
pub fn route_request(
    b: &mut [u8; ROUTE_REQ_MAX],
    seq: u32,
    dst: &SockAddr,
    ctx: &RouteContext,
) -> usize {
    let (family, ip, ip_len): (u8, [u8; 16], usize) = match dst.as_v4() {
        Some(v4) => {
            let mut ip = [0u8; 16];
            ip[..4].copy_from_slice(&v4);
            (libc::AF_INET as u8, ip, 4)
        }
        None => match dst {
            SockAddr::V6 { ip, .. } => (libc::AF_INET6 as u8, *ip, 16),
            SockAddr::V4 { .. } => unreachable_v4(),
        },
    };
    let mut len = 16 + 12;
    b[16] = family;
    b[17] = (ip_len * 8) as u8;
    b[18..28].fill(0);
    b[19] = ctx.tos;
    let mut attr = |b: &mut [u8; ROUTE_REQ_MAX], ty: u16, v: &[u8]| {
        put_u16(b, len, (4 + v.len()) as u16);
        put_u16(b, len + 2, ty);
        b[len + 4..len + 4 + v.len()].copy_from_slice(v);
        let end = len + 4 + v.len();
        len = (end + 3) & !3;
        b[end..len].fill(0);
    };
    attr(b, RTA_DST, &ip[..ip_len]);
    let oif = if ctx.oif != 0 { ctx.oif } else { dst.scope() };
    if oif != 0 {
        attr(b, RTA_OIF, &oif.to_ne_bytes());
    }
    if ctx.mark != 0 {
        attr(b, RTA_MARK, &ctx.mark.to_ne_bytes());
    }
    attr(b, RTA_IP_PROTO, &[libc::IPPROTO_UDP as u8]);
    attr(b, RTA_DPORT, &dst.port().to_be_bytes());
    nlmsghdr(b, len, RTM_GETROUTE, NLM_F_REQUEST, seq);
    len
}

// as_v4() is Some for every V4 address; this arm cannot be reached.
fn unreachable_v4() -> (u8, [u8; 16], usize) {
    (libc::AF_INET as u8, [0; 16], 4)
}

/// The preferred source address (port 0, shaped like `dst`) and the output interface in an
/// RTM_NEWROUTE reply.
pub fn parse_route_reply(b: &[u8], dst: &SockAddr) -> Option<(SockAddr, u32)> {
    if b.len() < 28 || get_u16(b, 4) != RTM_NEWROUTE {
        return None;
    }
    let total = (get_u32(b, 0) as usize).min(b.len());
    let mut at = 16 + 12;
    let (mut src, mut oif) = (None, 0);
    while at + 4 <= total {
        let alen = get_u16(b, at) as usize;
        if alen < 4 || at + alen > total {
            return None;
        }
        let v = &b[at + 4..at + alen];
        match get_u16(b, at + 2) {
            RTA_PREFSRC => src = prefsrc(v, dst),
            RTA_OIF if v.len() == 4 => oif = get_u32(v, 0),
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    src.map(|s| (s, oif))
}

fn prefsrc(v: &[u8], dst: &SockAddr) -> Option<SockAddr> {
    match (v.len(), dst) {
        (4, SockAddr::V4 { .. }) => Some(SockAddr::V4 {
            ip: [v[0], v[1], v[2], v[3]],
            port: 0,
        }),
        (4, SockAddr::V6 { .. }) => Some(SockAddr::mapped([v[0], v[1], v[2], v[3]], 0)),
        (16, SockAddr::V6 { scope, .. }) => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(v);
            let link_local = ip[0] == 0xfe && ip[1] & 0xc0 == 0x80;
            Some(SockAddr::V6 {
                ip,
                port: 0,
                flowinfo: 0,
                scope: if link_local { *scope } else { 0 },
            })
        }
        _ => None,
    }
}

/// The source address the kernel would use to reach `dst` from a socket with `ctx`, and the
/// interface it would leave by (where replies come in: the ifindex of a SOCK_DIAG lookup).
/// Asked in namespace `ns`, as `udp_exact`.
pub fn route_source(ns: Ns, dst: &SockAddr, ctx: &RouteContext) -> Result<(SockAddr, u32), c_int> {
    let _keep = KeepErrno::new();
    let seq = SEQ.fetch_add(1, Relaxed);
    let mut req = [0u8; ROUTE_REQ_MAX];
    let len = route_request(&mut req, seq, dst, ctx);
    let lease = ROUTE.take(ns)?;
    let mut buf = [0u8; 1024];
    let n = match send(lease.fd, &req[..len]).and_then(|_| reply_for(lease.fd, seq, &mut buf)) {
        Ok(n) => n,
        Err(e) => {
            lease.discard();
            return Err(e);
        }
    };
    if get_u16(&buf, 4) == NLMSG_ERROR {
        return Err(error_of(&buf));
    }
    parse_route_reply(&buf[..n], dst).ok_or(libc::EADDRNOTAVAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_request_puts_remote_first() {
        let mut b = [0u8; DIAG_REQ_LEN];
        let local = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 40000,
        };
        let remote = SockAddr::V4 {
            ip: [127, 0, 0, 2],
            port: 53,
        };
        diag_request(
            &mut b,
            7,
            NLM_F_REQUEST,
            libc::AF_INET,
            libc::IPPROTO_UDP,
            (&diag_ip(&remote, libc::AF_INET), 53),
            (&diag_ip(&local, libc::AF_INET), 40000),
            0,
        );
        assert_eq!(get_u32(&b, 0) as usize, DIAG_REQ_LEN);
        assert_eq!(get_u16(&b, 4), SOCK_DIAG_BY_FAMILY);
        assert_eq!(get_u16(&b, 6), NLM_F_REQUEST, "no NLM_F_DUMP: exact lookup");
        assert_eq!(&b[24..28], &[0, 53, 0x9c, 0x40]);
        assert_eq!(&b[28..32], &[127, 0, 0, 2]);
        assert_eq!(&b[44..48], &[127, 0, 0, 1]);
        assert_eq!(&b[64..72], &[0xff; 8]);
    }

    #[test]
    fn cookie_halves_low_first() {
        let mut msg = [0u8; 16 + 72];
        msg[16 + 1] = TCP_ESTABLISHED;
        msg[16 + 4..16 + 6].copy_from_slice(&40001u16.to_be_bytes());
        put_u32(&mut msg, 16 + 44, 0x0000_0002);
        put_u32(&mut msg, 16 + 48, 0x0000_0001);
        assert_eq!(
            parse_diag_msg(&msg, 16),
            Some(Found {
                state: TCP_ESTABLISHED,
                local_port: 40001,
                cookie: 0x1_0000_0002,
                family: 0,
                remote_port: 0,
                remote_ip: [0; 16],
            })
        );
    }

    #[test]
    fn a_socket_of_another_peer_is_not_the_4_tuples_owner() {
        let mut msg = [0u8; 16 + 72];
        msg[16] = libc::AF_INET as u8;
        msg[16 + 1] = TCP_ESTABLISHED;
        msg[16 + 6..16 + 8].copy_from_slice(&53u16.to_be_bytes());
        msg[16 + 24..16 + 28].copy_from_slice(&[127, 0, 0, 2]);
        let f = parse_diag_msg(&msg, 16).unwrap();
        let peer = |ip, port| SockAddr::V4 { ip, port };
        assert!(f.connected_to(&peer([127, 0, 0, 2], 53)));
        assert!(
            !f.connected_to(&peer([127, 0, 0, 3], 53)),
            "another address"
        );
        assert!(!f.connected_to(&peer([127, 0, 0, 2], 54)), "another port");
        assert!(f.connected_to(&SockAddr::mapped([127, 0, 0, 2], 53)));
        let mut sentinel = f;
        sentinel.remote_port = 0;
        assert!(
            sentinel.connected_to(&peer([127, 0, 0, 2], 9)),
            "a sentinel: any port"
        );
        let mut unconnected = f;
        unconnected.state = 7;
        assert!(!unconnected.connected_to(&peer([127, 0, 0, 2], 53)));
    }

    #[test]
    fn route_request_and_reply() {
        let mut b = [0u8; ROUTE_REQ_MAX];
        let dst = SockAddr::V4 {
            ip: [127, 0, 0, 9],
            port: 53,
        };
        let ctx = RouteContext {
            oif: 0,
            mark: 7,
            tos: 0x10,
        };
        let len = route_request(&mut b, 3, &dst, &ctx);
        // RTA_DST, RTA_MARK, RTA_IP_PROTO, RTA_DPORT
        assert_eq!(len, 16 + 12 + 8 + 8 + 8 + 8);
        assert_eq!(b[16], libc::AF_INET as u8);
        assert_eq!(b[19], 0x10, "tos");
        assert_eq!(&b[32..36], &[127, 0, 0, 9]);
        assert_eq!((get_u16(&b, 38), get_u32(&b, 40)), (RTA_MARK, 7));
        assert_eq!((get_u16(&b, 46), b[48]), (RTA_IP_PROTO, 17));
        assert_eq!(
            (get_u16(&b, 54), &b[56..58]),
            (RTA_DPORT, &53u16.to_be_bytes()[..])
        );
        // a reply with RTA_TABLE then RTA_PREFSRC
        let mut r = vec![0u8; 16 + 12];
        put_u16(&mut r, 4, RTM_NEWROUTE);
        r.extend_from_slice(&[8, 0, 15, 0, 254, 0, 0, 0]);
        r.extend_from_slice(&[8, 0, 7, 0, 127, 0, 0, 1]);
        r.extend_from_slice(&[8, 0, 4, 0]);
        r.extend_from_slice(&1u32.to_ne_bytes());
        let n = r.len() as u32;
        put_u32(&mut r, 0, n);
        assert_eq!(
            parse_route_reply(&r, &dst),
            Some((
                SockAddr::V4 {
                    ip: [127, 0, 0, 1],
                    port: 0
                },
                1
            ))
        );
        let mapped = SockAddr::mapped([127, 0, 0, 9], 53);
        assert_eq!(
            parse_route_reply(&r, &mapped),
            Some((SockAddr::mapped([127, 0, 0, 1], 0), 1))
        );
    }
}
