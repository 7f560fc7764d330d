//! `connectx status`: how close this network namespace is to running out of ports, per
//! protocol and source address, from SOCK_DIAG dumps (sockdiag.rs), the port sysctls, and
//! /proc for the processes that have connectx loaded.
//!
//! The figures (README "connectx status" says what each means):
//! - usable: ip_local_port_range minus ip_local_reserved_ports;
//! - per source address S: ports of the usable range held on S or on the wildcard (any
//!   state: listening, bound only, connected, TIME_WAIT); `free for bind` = usable minus those:
//!   what a new bind-before-connect gets without connectx (bind needs a port nobody holds);
//! - per destination D from S: 4-tuples used (TIME_WAIT included: it holds its 4-tuple), and
//!   the headroom with connectx: usable minus the ports already used towards D minus the ports
//!   of blockers (listening or bound-only sockets on S or the wildcard, which take a port from
//!   every destination);
//! - blockers are listed with their port.
//!
//! The wildcard: 0.0.0.0 blocks IPv4 sources, :: blocks IPv6 ones (a dual-stack :: socket also
//! blocks IPv4 in the kernel; SOCK_DIAG does not say which, so that is not counted).

use super::sockdiag::{self, Sock};
use super::{Res, fail, json, stats};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Ports in use and headroom per source address and destination (this network namespace)
///
/// Per protocol and source address: the usable port range (minus reserved ports), ports in
/// use, and per destination the 4-tuples used and the headroom left: without connectx the
/// ports free for a new bind-before-connect, with it the ports still free towards that
/// destination. Also TIME_WAIT counts, bound-only and listening sockets that block a port for
/// every destination, and the processes that have connectx loaded.
///
/// Exit status: 0, or 3 when a destination shown is full (no port left even with connectx;
/// not with --prometheus, whose metrics say it), 1 on an error, 2 on a bad command line.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// JSON instead of the table
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Prometheus text format, by node_exporter's textfile collector conventions (a `netns`
    /// label; per-destination series capped by --top, default 20, the rest summed as
    /// destination="other")
    #[arg(long)]
    prometheus: bool,
    /// The network namespace to look at: a name of `ip netns` (/run/netns/NAME) or a path such
    /// as /proc/PID/ns/net (default: this one)
    #[arg(short = 'N', long, value_name = "NETNS")]
    netns: Option<String>,
    /// Only this source address
    #[arg(long, value_name = "IP")]
    source: Option<IpAddr>,
    /// Only destinations with this address (IP) or address and port (IP:PORT, [IPv6]:PORT)
    #[arg(long, value_name = "ADDR")]
    dst: Option<String>,
    /// Per source address, only the N destinations with the least headroom
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Write to FILE (atomically: a temporary file renamed over it), as the textfile collector
    /// wants
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Again every SECS seconds, until interrupted
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    watch: Option<u64>,
}

pub struct Range {
    pub lo: u16,
    pub hi: u16,
    pub reserved: BTreeSet<u16>,
}

impl Range {
    pub fn usable(&self, p: u16) -> bool {
        p >= self.lo && p <= self.hi && !self.reserved.contains(&p)
    }
    pub fn count(&self) -> usize {
        (self.lo..=self.hi).filter(|p| self.usable(*p)).count()
    }
}

fn read_range() -> Res<Range> {
    let r = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map_err(|e| fail(format!("status: ip_local_port_range: {e}")))?;
    let mut it = r.split_whitespace().filter_map(|w| w.parse::<u16>().ok());
    let (lo, hi) = match (it.next(), it.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(fail(format!("status: ip_local_port_range: `{}`", r.trim()))),
    };
    let res =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap_or_default();
    Ok(Range {
        lo,
        hi,
        reserved: parse_reserved(&res),
    })
}

/// `1000,2000-2005` → the set of ports.
pub fn parse_reserved(s: &str) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
            out.extend(a..=b);
        }
    }
    out
}

#[derive(Default)]
pub struct Dest {
    pub tuples: usize,
    pub time_wait: usize,
    pub ports: BTreeSet<u16>,
    /// What a connectx client gets towards this destination: at least `headroom`, at most
    /// `headroom_max` (equal unless some ports' origin is unknown, see `Origin`).
    pub headroom: usize,
    pub headroom_max: usize,
}

pub struct Blocker {
    pub port: u16,
    pub kind: &'static str,
    pub on: IpAddr,
    /// The owner, where the caller may see it: "pid (program)".
    pub owner: Option<String>,
}

pub struct Source {
    pub addr: IpAddr,
    pub in_use: usize,
    pub free_for_bind: usize,
    pub time_wait: usize,
    pub blockers: Vec<Blocker>,
    pub dests: BTreeMap<(IpAddr, u16), Dest>,
    /// Headroom with connectx towards a destination not used yet (at least, at most).
    pub headroom_new: usize,
    pub headroom_new_max: usize,
    /// Ports whose holders status cannot classify (TCP: see `Origin`).
    pub unknown: usize,
}

pub struct Proto {
    pub name: &'static str,
    pub sources: Vec<Source>,
}

fn unspecified_like(a: &IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Where a TCP port's bind bucket came from, which decides whether a connectx connect may use
/// it. The kernel's connect (`__inet_hash_connect`, what connectx's deferred bind relies on)
/// never takes a port whose bucket on the source address (or the wildcard) was made by bind()
/// or listen(), TIME_WAIT included; it shares a bucket made by connect with every other
/// destination. (Measured on 6.18 by tests/operators.rs `status_headroom_is_what_a_connectx_
/// client_gets`: a listener on another address does not take the port from connect.) SOCK_DIAG
/// does not show the bucket. What it shows:
/// - listening and bound-only sockets: `Bind`, certainly;
/// - a live socket with IP_BIND_ADDRESS_NO_PORT (connectx's flows, curl): its port came from
///   connect, so the bucket is `Connect`;
/// - connections without it and TIME_WAITs: their port came from connect (plain connect) or
///   from bind() (`bind(ip, 0)` + connect without connectx, `--local-port`): `Unknown`. status
///   then shows a range (at least: as if bound; at most: as if connected) and says so, rather
///   than promise headroom connect may not get.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    Bind,
    Connect,
    Unknown,
}

/// The origin of each TCP port's bucket from the sockets on it (any address).
pub fn tcp_origins(socks: &[Sock]) -> BTreeMap<u16, Origin> {
    let mut o: BTreeMap<u16, Origin> = BTreeMap::new();
    for s in socks {
        let this = match s.state {
            sockdiag::TCP_LISTEN | sockdiag::TCP_CLOSE | sockdiag::TCP_BOUND_INACTIVE => {
                Origin::Bind
            }
            sockdiag::TCP_TIME_WAIT => Origin::Unknown,
            _ if s.no_port == Some(true) => Origin::Connect,
            _ => Origin::Unknown,
        };
        let e = o.entry(s.sport).or_insert(this);
        *e = match (*e, this) {
            (Origin::Bind, _) | (_, Origin::Bind) => Origin::Bind,
            (Origin::Connect, _) | (_, Origin::Connect) => Origin::Connect,
            _ => Origin::Unknown,
        };
    }
    o
}

/// What the analysis needs beyond the sockets.
pub struct Context<'a> {
    pub range: &'a Range,
    /// Socket inode -> "pid (program)", for the processes the caller may see.
    pub owners: &'a BTreeMap<u32, String>,
    /// net.ipv4.tcp_tw_reuse of this namespace (0, 1, or 2: loopback only).
    pub tw_reuse: u8,
}

fn loopback(a: &IpAddr) -> bool {
    a.is_loopback()
        || matches!(a, IpAddr::V6(v) if v.to_ipv4_mapped().is_some_and(|x| x.is_loopback()))
}

/// The figures for one protocol from its sockets.
pub fn analyse(name: &'static str, socks: &[Sock], cx: &Context) -> Proto {
    let range = cx.range;
    let usable = range.count();
    let tcp = name == "tcp";
    // Every source address a socket of this protocol uses (not the wildcard).
    let addrs: BTreeSet<IpAddr> = socks
        .iter()
        .filter(|s| !s.src.is_unspecified() && range.usable(s.sport))
        .map(|s| s.src)
        .collect();
    let mut sources = Vec::new();
    for a in addrs {
        let wild = unspecified_like(&a);
        let on_a = |s: &&Sock| s.src == a || s.src == wild;
        let mine: Vec<&Sock> = socks
            .iter()
            .filter(on_a)
            .filter(|s| range.usable(s.sport))
            .collect();
        let held: BTreeSet<u16> = mine.iter().map(|s| s.sport).collect();
        // Ports a connectx client can never use from `a`, and ports it may not.
        let mut blocked: BTreeSet<u16> = BTreeSet::new();
        let mut unsure: BTreeSet<u16> = BTreeSet::new();
        let mut blockers: Vec<Blocker> = Vec::new();
        let owner = |s: &Sock| cx.owners.get(&s.inode).cloned();
        if tcp {
            let origins = tcp_origins(&mine.iter().map(|s| (*s).clone()).collect::<Vec<_>>());
            for s in &mine {
                match origins.get(&s.sport) {
                    Some(Origin::Bind) => {
                        let kind = match s.state {
                            sockdiag::TCP_LISTEN => "listening",
                            sockdiag::TCP_CLOSE | sockdiag::TCP_BOUND_INACTIVE => "bound only",
                            sockdiag::TCP_TIME_WAIT => "TIME_WAIT on a bound port",
                            _ => "connection on a bound port",
                        };
                        blocked.insert(s.sport);
                        blockers.push(Blocker {
                            port: s.sport,
                            kind,
                            on: s.src,
                            owner: owner(s),
                        });
                    }
                    Some(Origin::Unknown) => {
                        unsure.insert(s.sport);
                    }
                    _ => {}
                }
            }
            // One per port: the listening or bound socket that made the bucket first.
            blockers.sort_by_key(|b| (b.port, !matches!(b.kind, "listening" | "bound only")));
            blockers.dedup_by_key(|b| b.port);
        } else {
            for s in &mine {
                // The library's consent rule (src/udp/consent.rs): a connected socket carrying
                // connectx's mark (IP_BIND_ADDRESS_NO_PORT, which SOCK_DIAG shows from 5.10 on),
                // whichever way connectx reached its program (preload or supervisor). Sharing is
                // also per user: a flow of another user blocks a client of this one.
                let shared = !s.dst.is_unspecified() && s.no_port == Some(true);
                if !shared {
                    blocked.insert(s.sport);
                    blockers.push(Blocker {
                        port: s.sport,
                        kind: if s.dst.is_unspecified() {
                            "bound only"
                        } else {
                            "connected, not shared (no connectx mark)"
                        },
                        on: s.src,
                        owner: owner(s),
                    });
                }
            }
            blockers.sort_by_key(|b| b.port);
            blockers.dedup_by_key(|b| b.port);
        }
        let mut dests: BTreeMap<(IpAddr, u16), Dest> = BTreeMap::new();
        let mut reusable: BTreeMap<(IpAddr, u16), BTreeSet<u16>> = BTreeMap::new();
        let mut time_wait = 0;
        for s in mine
            .iter()
            .filter(|s| s.src == a && !s.dst.is_unspecified())
        {
            let tw = tcp && s.state == sockdiag::TCP_TIME_WAIT;
            if tcp && matches!(s.state, sockdiag::TCP_LISTEN | sockdiag::TCP_CLOSE) {
                continue;
            }
            let d = dests.entry((s.dst, s.dport)).or_default();
            d.tuples += 1;
            d.ports.insert(s.sport);
            if tw {
                d.time_wait += 1;
                time_wait += 1;
                // tcp_tw_reuse: connect may take over a TIME_WAIT's 4-tuple a second after its
                // last timestamp (if both ends use timestamps: not shown, so only "at most").
                let reuse =
                    cx.tw_reuse == 1 || (cx.tw_reuse == 2 && loopback(&s.src) && loopback(&s.dst));
                if reuse && s.expires <= 59_000 {
                    reusable
                        .entry((s.dst, s.dport))
                        .or_default()
                        .insert(s.sport);
                }
            }
        }
        let count = |taken: &BTreeSet<u16>, maybe: Option<&BTreeSet<u16>>| -> (usize, usize) {
            let (mut lo, mut hi) = (0, 0);
            for p in (range.lo..=range.hi).filter(|p| range.usable(*p)) {
                if blocked.contains(&p) {
                    continue;
                }
                let may_reuse = maybe.is_some_and(|m| m.contains(&p));
                if taken.contains(&p) && !may_reuse {
                    continue;
                }
                hi += 1;
                if !unsure.contains(&p) && !may_reuse {
                    lo += 1;
                }
            }
            (lo, hi)
        };
        for (k, d) in dests.iter_mut() {
            (d.headroom, d.headroom_max) = count(&d.ports, reusable.get(k));
        }
        let (headroom_new, headroom_new_max) = count(&BTreeSet::new(), None);
        sources.push(Source {
            addr: a,
            in_use: held.len(),
            free_for_bind: usable.saturating_sub(held.len()),
            time_wait,
            blockers,
            dests,
            headroom_new,
            headroom_new_max,
            unknown: unsure.difference(&blocked).count(),
        });
    }
    Proto { name, sources }
}

/// Socket inode -> "pid (program)" for every process the caller may see.
pub fn socket_owners() -> BTreeMap<u32, String> {
    let mut owners = BTreeMap::new();
    for pid in stats::pids() {
        let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut name = None;
        for e in rd.flatten() {
            let Ok(t) = std::fs::read_link(e.path()) else {
                continue;
            };
            let Some(ino) = t
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let n = name.get_or_insert_with(|| format!("{pid} ({})", stats::program(pid)));
            owners.entry(ino).or_insert_with(|| n.clone());
        }
    }
    owners
}

/// The processes of this network namespace with connectx loaded, and their counters.
pub fn loaded() -> stats::Survey {
    let own_ns = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
    stats::survey(|pid| {
        // Unreadable (another user's process): kept, so that it is counted as not inspected.
        match std::fs::metadata(format!("/proc/{pid}/ns/net")) {
            Ok(m) => Some(m.ino()) == own_ns,
            Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
        }
    })
}

/// The name of the namespace we look at: its `ip netns` name where it has one (set by
/// `enter_netns`, else looked up in /run/netns), else `net:[INODE]`.
static NS_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn ns_name() -> String {
    NS_NAME
        .get_or_init(|| {
            let own = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
            if let Ok(rd) = std::fs::read_dir("/run/netns") {
                for e in rd.flatten() {
                    if std::fs::metadata(e.path()).map(|m| m.ino()).ok() == own {
                        return e.file_name().to_string_lossy().into_owned();
                    }
                }
            }
            std::fs::read_link("/proc/self/ns/net")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into())
        })
        .clone()
}

/// `-N NETNS`: this thread (the command is single-threaded) moves into that namespace.
fn enter_netns(n: &str) -> Res<()> {
    let path = if n.contains('/') {
        std::path::PathBuf::from(n)
    } else {
        std::path::Path::new("/run/netns").join(n)
    };
    let f = std::fs::File::open(&path).map_err(|e| {
        fail(format!(
            "status: network namespace {}: {}",
            path.display(),
            super::ioerr(&e)
        ))
    })?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a descriptor we own.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(fail(format!(
            "status: entering network namespace {}: {} (needs root)",
            path.display(),
            super::ioerr(&e)
        )));
    }
    if !n.contains('/') {
        let _ = NS_NAME.set(n.to_string());
    }
    Ok(())
}

fn dest_str(d: &(IpAddr, u16)) -> String {
    match d.0 {
        IpAddr::V4(a) => format!("{a}:{}", d.1),
        IpAddr::V6(a) => format!("[{a}]:{}", d.1),
    }
}

pub fn main(a: StatusArgs) -> Res<i32> {
    if let Some(n) = &a.netns {
        enter_netns(n)?;
    }
    let dst = match &a.dst {
        None => None,
        Some(d) => Some(parse_dst(d).ok_or_else(|| {
            super::usage_err(format!(
                "status: --dst `{d}` is not IP, IP:PORT or [IPv6]:PORT (try `connectx status --help`)"
            ))
        })?),
    };
    loop {
        let (text, full) = once(&a, dst)?;
        match &a.output {
            Some(path) => write_atomically(path, &text)?,
            None => print!("{text}"),
        }
        match a.watch {
            Some(secs) => {
                if a.output.is_none() {
                    println!();
                }
                std::thread::sleep(std::time::Duration::from_secs(secs));
            }
            None => return Ok(if full && !a.prometheus { 3 } else { 0 }),
        }
    }
}

/// `--dst`: an address, or an address and port.
fn parse_dst(d: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = d.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let sa: std::net::SocketAddr = d.parse().ok()?;
    Some((sa.ip(), Some(sa.port())))
}

/// A temporary file in the same directory, renamed over `path`: a reader (the textfile
/// collector) never sees half a file.
fn write_atomically(path: &std::path::Path, text: &str) -> Res<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(format!(
                "status: writing {}: {}",
                path.display(),
                super::ioerr(&e)
            ))
        })
}

/// One look at the namespace: the text to show, and whether a destination shown is full.
fn once(a: &StatusArgs, dst: Option<(IpAddr, Option<u16>)>) -> Res<(String, bool)> {
    let range = read_range()?;
    let tcp = dump_tcp_with_probe(&range)
        .map_err(|e| fail(format!("status: SOCK_DIAG dump of TCP sockets: {e}")))?;
    let udp = sockdiag::dump(libc::IPPROTO_UDP as u8)
        .map_err(|e| fail(format!("status: SOCK_DIAG dump of UDP sockets: {e}")))?;
    let procs = loaded();
    let owners = socket_owners();
    let tw_reuse = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_tw_reuse")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(2);
    let cx = Context {
        range: &range,
        owners: &owners,
        tw_reuse,
    };
    let mut protos = [analyse("tcp", &tcp, &cx), analyse("udp", &udp, &cx)];
    let top = a.top.or(a.prometheus.then_some(PROMETHEUS_TOP));
    for p in &mut protos {
        filter(p, a.source, dst, if a.prometheus { None } else { top });
    }
    let full = protos
        .iter()
        .flat_map(|p| &p.sources)
        .flat_map(|s| s.dests.values())
        .any(|d| d.headroom_max == 0);
    let text = if a.json {
        to_json(&range, &protos, &procs)
    } else if a.prometheus {
        to_prometheus(&range, &protos, &procs, top.unwrap_or(PROMETHEUS_TOP))
    } else {
        to_table(&range, &protos, &procs)
    };
    Ok((text, full))
}

/// Per-destination series per source in --prometheus unless --top says otherwise.
const PROMETHEUS_TOP: usize = 20;

/// --source, --dst and --top.
fn filter(
    p: &mut Proto,
    source: Option<IpAddr>,
    dst: Option<(IpAddr, Option<u16>)>,
    top: Option<usize>,
) {
    if let Some(src) = source {
        p.sources.retain(|s| s.addr == src);
    }
    for s in &mut p.sources {
        if let Some((ip, port)) = dst {
            s.dests
                .retain(|(a, pt), _| *a == ip && port.is_none_or(|x| x == *pt));
        }
        if let Some(n) = top {
            let keep: BTreeSet<(IpAddr, u16)> = least_headroom(s).into_iter().take(n).collect();
            s.dests.retain(|k, _| keep.contains(k));
        }
    }
}

/// A source's destinations, least headroom first.
fn least_headroom(s: &Source) -> Vec<(IpAddr, u16)> {
    let mut v: Vec<(&(IpAddr, u16), &Dest)> = s.dests.iter().collect();
    v.sort_by_key(|(k, d)| (d.headroom, d.headroom_max, **k));
    v.into_iter().map(|(k, _)| *k).collect()
}

/// Headroom in the table: a number, "0 (full)", or LO..HI where the origin of some ports is
/// unknown (`Origin`).
fn headroom_text(lo: usize, hi: usize) -> String {
    match (lo, hi) {
        (_, 0) => "0 (full)".into(),
        (l, h) if l == h => l.to_string(),
        (l, h) => format!("{l}..{h}"),
    }
}

fn pad(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let w: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = w[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Whether this look's TCP dump showed a socket that only bound (TCP_BOUND_INACTIVE, Linux 6.5+;
/// Debian's 6.1 has not): status's own probe, bound for the dump (`dump_tcp_with_probe`); never
/// the version string. Where it did not (or no probe could be made), status cannot see such
/// sockets, and says so.
static BOUND_ONLY_SEEN: AtomicBool = AtomicBool::new(false);

pub fn bound_only_dumped() -> bool {
    BOUND_ONLY_SEEN.load(Relaxed)
}

/// The TCP dump, with a probe in it: a socket bound (not listening) to the wildcard on a port
/// outside the usable range, if one is free (a few tries). Whether the dump lists it says whether
/// this kernel shows bound-only sockets; the probe itself is left out of the answer.
fn dump_tcp_with_probe(range: &Range) -> std::io::Result<Vec<Sock>> {
    let probe = bound_probe(range);
    let socks = sockdiag::dump(libc::IPPROTO_TCP as u8);
    let (seen, socks) = match (probe, socks) {
        (Some((fd, inode)), Ok(mut socks)) => {
            let before = socks.len();
            socks.retain(|s| s.inode != inode || inode == 0);
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
            (socks.len() != before, Ok(socks))
        }
        (Some((fd, _)), r) => {
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
            (false, r)
        }
        (None, r) => (false, r),
    };
    BOUND_ONLY_SEEN.store(seen, Relaxed);
    socks
}

/// A TCP socket bound to 0.0.0.0:P, P outside the usable range and above the privileged ports;
/// its descriptor and inode. None if no such bind succeeded.
fn bound_probe(range: &Range) -> Option<(i32, u32)> {
    let seed = std::process::id() as usize
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as usize);
    for i in 0..16usize {
        let port = (10_000 + (seed.wrapping_add(i * 7919)) % 50_000) as u16;
        if (range.lo..=range.hi).contains(&port) {
            continue;
        }
        // SAFETY: plain socket calls on a descriptor we own (closed on every failure).
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return None;
            }
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr { s_addr: 0 },
                sin_zero: [0; 8],
            };
            let mut st: libc::stat = std::mem::zeroed();
            if libc::bind(
                fd,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) == 0
                && libc::fstat(fd, &mut st) == 0
            {
                return Some((fd, st.st_ino as u32));
            }
            libc::close(fd);
        }
    }
    None
}

/// One line: per protocol, destinations in use, how many are full, and the least headroom.
pub fn summary(protos: &[Proto]) -> String {
    let parts: Vec<String> = protos
        .iter()
        .map(|p| {
            let dests: Vec<(&Source, &(IpAddr, u16), &Dest)> = p
                .sources
                .iter()
                .flat_map(|s| s.dests.iter().map(move |(k, d)| (s, k, d)))
                .collect();
            let full = dests.iter().filter(|x| x.2.headroom_max == 0).count();
            let least = dests
                .iter()
                .min_by_key(|x| (x.2.headroom, x.2.headroom_max))
                .map(|(s, k, d)| {
                    format!(
                        ", least headroom {} ({} to {})",
                        headroom_text(d.headroom, d.headroom_max),
                        s.addr,
                        dest_str(k)
                    )
                })
                .unwrap_or_default();
            format!(
                "{} {} destinations, {full} full{least}",
                p.name.to_uppercase(),
                dests.len()
            )
        })
        .collect();
    format!("summary: {}\n", parts.join("; "))
}

pub fn to_table(range: &Range, protos: &[Proto], procs: &stats::Survey) -> String {
    let mut o = format!(
        "network namespace {}: ports {}-{}, {} reserved in range, {} usable per source address\n",
        ns_name(),
        range.lo,
        range.hi,
        (range.lo..=range.hi)
            .filter(|p| range.reserved.contains(p))
            .count(),
        range.count()
    );
    o.push_str(&summary(protos));
    if !bound_only_dumped() {
        o.push_str(
            "note: this kernel (before 6.5) does not dump TCP sockets that only bound a port: \
             their ports are not counted as blockers, so headroom may be overstated by them\n",
        );
    }
    for p in protos {
        o.push('\n');
        if p.sources.is_empty() {
            o.push_str(&format!(
                "{}: no source address uses a port of the range\n",
                p.name.to_uppercase()
            ));
            continue;
        }
        let mut rows = vec![vec![
            format!("{} source", p.name.to_uppercase()),
            "ports in use".into(),
            "free for bind (without connectx)".into(),
            "TIME_WAIT".into(),
            "blockers".into(),
        ]];
        for s in &p.sources {
            let b: Vec<String> = s
                .blockers
                .iter()
                .map(|b| match &b.owner {
                    Some(o) => format!("{} {} (pid {o})", b.port, b.kind),
                    None => format!("{} {}", b.port, b.kind),
                })
                .collect();
            rows.push(vec![
                s.addr.to_string(),
                s.in_use.to_string(),
                s.free_for_bind.to_string(),
                s.time_wait.to_string(),
                if b.is_empty() {
                    "-".into()
                } else {
                    b.join(", ")
                },
            ]);
        }
        o.push_str(&pad(&rows));
        for s in &p.sources {
            let mut rows = vec![vec![
                format!("  from {} to", s.addr),
                "4-tuples".into(),
                "TIME_WAIT".into(),
                "headroom with connectx".into(),
            ]];
            for (d, v) in &s.dests {
                rows.push(vec![
                    format!("  {}", dest_str(d)),
                    v.tuples.to_string(),
                    v.time_wait.to_string(),
                    headroom_text(v.headroom, v.headroom_max),
                ]);
            }
            rows.push(vec![
                "  any other destination".into(),
                "0".into(),
                "0".into(),
                headroom_text(s.headroom_new, s.headroom_new_max),
            ]);
            o.push_str(&pad(&rows));
            if s.unknown > 0 {
                o.push_str(&format!(
                    "  LO..HI: {} ports are held by connections or TIME_WAITs that connectx did not \
                     make; the kernel's connect cannot use them if their port came from bind() \
                     (SOCK_DIAG does not say): connectx gets at least LO, at most HI\n",
                    s.unknown
                ));
            }
        }
    }
    o.push('\n');
    o.push_str(&processes_table(procs));
    o
}

/// The processes with connectx loaded and their counters (not zero), and what we could not see.
fn processes_table(procs: &stats::Survey) -> String {
    let mut o = String::new();
    if procs.loaded.is_empty() {
        o.push_str("no process of this network namespace has connectx loaded");
        if procs.denied > 0 {
            o.push_str(" that you may inspect");
        }
        o.push('\n');
    } else {
        o.push_str("processes with connectx loaded:\n");
        let mut rows = vec![vec![
            "  pid".to_string(),
            "program".into(),
            "counters (connectx stats PID)".into(),
        ]];
        for (pid, _, c) in &procs.loaded {
            let (program, text) = match c {
                Some(Ok(p)) => {
                    let nz: Vec<String> = p
                        .counters
                        .iter()
                        .filter(|(_, v)| *v != 0)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    (
                        p.program.clone(),
                        if nz.is_empty() {
                            "all 0".into()
                        } else {
                            nz.join(" ")
                        },
                    )
                }
                None => (stats::program(*pid), "nothing counted yet".into()),
                Some(Err(e)) => (stats::program(*pid), e.clone()),
            };
            rows.push(vec![format!("  {pid}"), program, text]);
        }
        o.push_str(&pad(&rows));
    }
    if procs.denied > 0 {
        o.push_str(&format!(
            "{} not inspected (permission denied reading /proc/PID/maps): {}\n",
            stats::plural(procs.denied, "process", "processes"),
            stats::denied_advice()
        ));
    }
    o
}

pub fn to_json(range: &Range, protos: &[Proto], procs: &stats::Survey) -> String {
    let mut ps = Vec::new();
    for p in protos {
        let mut ss = Vec::new();
        for s in &p.sources {
            let ds: Vec<String> = s
                .dests
                .iter()
                .map(|(d, v)| {
                    format!(
                        "{{\"destination\": {}, \"tuples\": {}, \"time_wait\": {}, \"headroom\": {}, \"headroom_max\": {}}}",
                        json::s(&dest_str(d)),
                        v.tuples,
                        v.time_wait,
                        v.headroom,
                        v.headroom_max
                    )
                })
                .collect();
            let bs: Vec<String> = s
                .blockers
                .iter()
                .map(|b| {
                    format!(
                        "{{\"port\": {}, \"kind\": {}, \"address\": {}, \"owner\": {}}}",
                        b.port,
                        json::s(b.kind),
                        json::s(&b.on.to_string()),
                        b.owner
                            .as_deref()
                            .map(json::s)
                            .unwrap_or_else(|| "null".into())
                    )
                })
                .collect();
            ss.push(format!(
                "{{\"source\": {}, \"ports_in_use\": {}, \"free_for_bind\": {}, \"time_wait\": {}, \
                 \"headroom_new_destination\": {}, \"headroom_new_destination_max\": {}, \
                 \"unknown_origin_ports\": {}, \"blockers\": [{}], \"destinations\": [{}]}}",
                json::s(&s.addr.to_string()),
                s.in_use,
                s.free_for_bind,
                s.time_wait,
                s.headroom_new,
                s.headroom_new_max,
                s.unknown,
                bs.join(", "),
                ds.join(", ")
            ));
        }
        ps.push(format!("{}: [{}]", json::s(p.name), ss.join(", ")));
    }
    let ls: Vec<String> = procs
        .loaded
        .iter()
        .map(|(pid, _, c)| stats::json_proc(*pid, c))
        .collect();
    let read = procs
        .loaded
        .iter()
        .filter_map(|(_, _, c)| c.as_ref()?.as_ref().ok());
    let totals: Vec<String> = stats::totals(read)
        .iter()
        .map(|(k, v)| format!("{}: {v}", json::s(k)))
        .collect();
    format!(
        "{{\"namespace\": {}, \"range\": {{\"low\": {}, \"high\": {}, \"reserved\": {}, \"usable\": {}}}, {}, \"loaded\": [{}], \"counters_total\": {{{}}}, \"not_inspected\": {}, \"tcp_bound_only_visible\": {}}}\n",
        json::s(&ns_name()),
        range.lo,
        range.hi,
        (range.lo..=range.hi)
            .filter(|p| range.reserved.contains(p))
            .count(),
        range.count(),
        ps.join(", "),
        ls.join(", "),
        totals.join(", "),
        procs.denied,
        // false before Linux 6.5: TCP sockets that only bound a port are not in the dump, so
        // their ports count as free and headroom may be overstated (the table's note).
        bound_only_dumped()
    )
}

/// Label values escaped as the text format asks (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text format, by node_exporter's textfile collector conventions: every
/// series has a `netns` label (two namespaces on one host do not collide); counters end in
/// `_total`; per source, only the `top` destinations with the least headroom get series of
/// their own, the others are summed into destination="other" (tuples and TIME_WAIT summed,
/// headroom the least of them), and `connectx_destinations` says how many there are; UDP has
/// no TIME_WAIT series.
pub fn to_prometheus(range: &Range, protos: &[Proto], procs: &stats::Survey, top: usize) -> String {
    let ns = format!("netns=\"{}\"", label(&ns_name()));
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        o.push_str(&format!(
            "# HELP connectx_{name} {help}\n# TYPE connectx_{name} {kind}\n"
        ));
        for (labels, v) in samples {
            if labels.is_empty() {
                o.push_str(&format!("connectx_{name}{{{ns}}} {v}\n"));
            } else {
                o.push_str(&format!("connectx_{name}{{{ns},{labels}}} {v}\n"));
            }
        }
    };
    metric(
        "usable_ports",
        "gauge",
        "Ports of ip_local_port_range not reserved, per source address.",
        vec![(String::new(), range.count() as u64)],
    );
    let src = |p: &Proto, s: &Source| {
        format!(
            "proto=\"{}\",source=\"{}\"",
            p.name,
            label(&s.addr.to_string())
        )
    };
    let per_source = |tcp_only: bool, f: &dyn Fn(&Source) -> usize| -> Vec<(String, u64)> {
        protos
            .iter()
            .filter(|p| !tcp_only || p.name == "tcp")
            .flat_map(|p| p.sources.iter().map(move |s| (src(p, s), f(s) as u64)))
            .collect()
    };
    metric(
        "source_ports_in_use",
        "gauge",
        "Ports of the range held on the source address or the wildcard (any state).",
        per_source(false, &|s| s.in_use),
    );
    metric(
        "source_free_for_bind",
        "gauge",
        "Ports a new bind-before-connect gets on the source address without connectx.",
        per_source(false, &|s| s.free_for_bind),
    );
    metric(
        "source_time_wait",
        "gauge",
        "TCP connections in TIME_WAIT from the source address.",
        per_source(true, &|s| s.time_wait),
    );
    metric(
        "source_blockers",
        "gauge",
        "Ports connectx cannot share on the source address (listening, bound only, bound explicitly, other programs' UDP sockets).",
        per_source(false, &|s| s.blockers.len()),
    );
    metric(
        "source_unknown_origin_ports",
        "gauge",
        "TCP ports held by connections or TIME_WAITs whose port may have come from bind() (connect may not use them).",
        per_source(true, &|s| s.unknown),
    );
    metric(
        "source_headroom_new_destination",
        "gauge",
        "Connections connectx can certainly still open from the source to a destination not used yet.",
        per_source(false, &|s| s.headroom_new),
    );
    metric(
        "source_headroom_new_destination_max",
        "gauge",
        "At most that many (ports of unknown origin counted as usable).",
        per_source(false, &|s| s.headroom_new_max),
    );
    metric(
        "destinations",
        "gauge",
        "Destinations in use from the source address (series per destination are capped).",
        per_source(false, &|s| s.dests.len()),
    );
    // The capped per-destination rows: (labels, tuples, time_wait, headroom, headroom_max).
    let mut rows: Vec<(String, bool, [usize; 4])> = Vec::new();
    for p in protos {
        for s in &p.sources {
            let order = least_headroom(s);
            let mut other: Option<[usize; 4]> = None;
            for (i, k) in order.iter().enumerate() {
                let d = &s.dests[k];
                let v = [d.tuples, d.time_wait, d.headroom, d.headroom_max];
                if i < top {
                    rows.push((
                        format!("{},destination=\"{}\"", src(p, s), label(&dest_str(k))),
                        p.name == "tcp",
                        v,
                    ));
                } else {
                    let o = other.get_or_insert([0, 0, usize::MAX, usize::MAX]);
                    o[0] += v[0];
                    o[1] += v[1];
                    o[2] = o[2].min(v[2]);
                    o[3] = o[3].min(v[3]);
                }
            }
            if let Some(v) = other {
                rows.push((
                    format!("{},destination=\"other\"", src(p, s)),
                    p.name == "tcp",
                    v,
                ));
            }
        }
    }
    let per_dest = |tcp_only: bool, i: usize| -> Vec<(String, u64)> {
        rows.iter()
            .filter(|r| !tcp_only || r.1)
            .map(|r| (r.0.clone(), r.2[i] as u64))
            .collect()
    };
    metric(
        "destination_tuples",
        "gauge",
        "4-tuples in use from the source address to the destination (TIME_WAIT included).",
        per_dest(false, 0),
    );
    metric(
        "destination_time_wait",
        "gauge",
        "TCP connections in TIME_WAIT from the source address to the destination.",
        per_dest(true, 1),
    );
    metric(
        "destination_headroom",
        "gauge",
        "Connections connectx can certainly still open from the source address to the destination.",
        per_dest(false, 2),
    );
    metric(
        "destination_headroom_max",
        "gauge",
        "At most that many (ports of unknown origin counted as usable).",
        per_dest(false, 3),
    );
    metric(
        "processes_loaded",
        "gauge",
        "Processes of this network namespace with libconnectx.so loaded.",
        vec![(String::new(), procs.loaded.len() as u64)],
    );
    metric(
        "processes_not_inspected",
        "gauge",
        "Processes whose /proc/PID/maps the collector could not read (run it as root).",
        vec![(String::new(), procs.denied as u64)],
    );
    let read = procs
        .loaded
        .iter()
        .filter_map(|(_, _, c)| c.as_ref()?.as_ref().ok());
    metric(
        "events_total",
        "counter",
        "What connectx did, summed over the live processes of the namespace (connectx stats).",
        stats::totals(read)
            .into_iter()
            .map(|(k, v)| (format!("event=\"{}\"", label(&k)), v))
            .collect(),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(state: u8, src: &str, sport: u16, dst: &str, dport: u16) -> Sock {
        Sock {
            state,
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
            no_port: Some(true),
            inode: 0,
            expires: 60_000,
        }
    }

    #[test]
    fn reserved_lists() {
        assert_eq!(
            parse_reserved("40001,40005-40007\n")
                .into_iter()
                .collect::<Vec<_>>(),
            vec![40001, 40005, 40006, 40007]
        );
        assert!(parse_reserved("").is_empty());
    }

    fn analyse_tcp(socks: &[Sock], range: &Range) -> Proto {
        let owners = BTreeMap::new();
        let cx = Context {
            range,
            owners: &owners,
            tw_reuse: 0,
        };
        analyse("tcp", socks, &cx)
    }

    #[test]
    fn headroom_per_destination_and_blockers() {
        let range = Range {
            lo: 100,
            hi: 104,
            reserved: [104].into(),
        };
        let est = sockdiag::TCP_ESTABLISHED;
        let socks = vec![
            s(est, "127.0.0.1", 100, "127.0.0.2", 7),
            s(est, "127.0.0.1", 101, "127.0.0.2", 7),
            s(est, "127.0.0.1", 100, "127.0.0.3", 7),
            s(sockdiag::TCP_LISTEN, "0.0.0.0", 103, "0.0.0.0", 0),
            s(est, "127.0.0.9", 100, "127.0.0.2", 7),
        ];
        let p = analyse_tcp(&socks, &range);
        assert_eq!(p.sources.len(), 2);
        let a = &p.sources[0];
        assert_eq!(a.addr.to_string(), "127.0.0.1");
        assert_eq!(a.in_use, 3); // 100, 101 and the wildcard listener's 103
        assert_eq!(a.free_for_bind, 1); // of 4 usable
        assert_eq!(a.blockers.len(), 1);
        let to2 = &a.dests[&("127.0.0.2".parse().unwrap(), 7)];
        assert_eq!((to2.tuples, to2.headroom, to2.headroom_max), (2, 1, 1));
        let to3 = &a.dests[&("127.0.0.3".parse().unwrap(), 7)];
        assert_eq!((to3.tuples, to3.headroom), (1, 2));
        assert_eq!((a.headroom_new, a.headroom_new_max), (3, 3));
    }

    #[test]
    fn a_bound_port_blocks_connect_on_every_address_and_unknown_origins_give_a_range() {
        let range = Range {
            lo: 100,
            hi: 109,
            reserved: BTreeSet::new(),
        };
        let est = sockdiag::TCP_ESTABLISHED;
        let mut plain = s(est, "127.0.0.1", 101, "127.0.0.2", 7);
        plain.no_port = Some(false);
        let socks = vec![
            // A wildcard listener takes 100 from 127.0.0.1's connects; one on another address
            // does not take 104.
            s(sockdiag::TCP_LISTEN, "0.0.0.0", 100, "0.0.0.0", 0),
            s(sockdiag::TCP_LISTEN, "127.0.0.5", 104, "0.0.0.0", 0),
            // A connection that may have been bound first, and a TIME_WAIT: unknown.
            plain,
            s(sockdiag::TCP_TIME_WAIT, "127.0.0.1", 102, "127.0.0.3", 7),
            // A connectx flow (IP_BIND_ADDRESS_NO_PORT): shared with other destinations.
            s(est, "127.0.0.1", 103, "127.0.0.2", 7),
        ];
        let p = analyse_tcp(&socks, &range);
        let a = p
            .sources
            .iter()
            .find(|x| x.addr.to_string() == "127.0.0.1")
            .unwrap();
        assert_eq!(a.unknown, 2);
        assert_eq!((a.headroom_new, a.headroom_new_max), (7, 9));
        let to2 = &a.dests[&("127.0.0.2".parse().unwrap(), 7)];
        // 101 and 103 are this destination's; 102 unknown; 100 blocked.
        assert_eq!((to2.headroom, to2.headroom_max), (6, 7));
        assert_eq!(
            origins_of(&socks),
            [
                Origin::Bind,
                Origin::Unknown,
                Origin::Unknown,
                Origin::Connect,
                Origin::Bind
            ]
        );
    }

    fn origins_of(socks: &[Sock]) -> Vec<Origin> {
        tcp_origins(socks).into_values().collect()
    }
}
