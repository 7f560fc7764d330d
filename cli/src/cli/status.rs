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

/// Ports in use and headroom per source address and destination (this network namespace)
///
/// Per protocol and source address: the usable port range (minus reserved ports), ports in
/// use, and per destination the 4-tuples used and the headroom left: without connectx the
/// ports free for a new bind-before-connect, with it the ports still free towards that
/// destination. Also TIME_WAIT counts, bound-only and listening sockets that block a port for
/// every destination, and the processes that have connectx loaded.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// JSON instead of the table
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Prometheus text format (for node_exporter's textfile collector)
    #[arg(long)]
    prometheus: bool,
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
    pub headroom: usize,
}

pub struct Blocker {
    pub port: u16,
    pub kind: &'static str,
    pub on: IpAddr,
}

pub struct Source {
    pub addr: IpAddr,
    pub in_use: usize,
    pub free_for_bind: usize,
    pub time_wait: usize,
    pub blockers: Vec<Blocker>,
    pub dests: BTreeMap<(IpAddr, u16), Dest>,
    /// Headroom with connectx towards a destination not used yet.
    pub headroom_new: usize,
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

/// The figures for one protocol from its sockets.
pub fn analyse(name: &'static str, socks: &[Sock], range: &Range) -> Proto {
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
        let mut blockers: Vec<Blocker> = mine
            .iter()
            .filter_map(|s| {
                let kind = if tcp {
                    match s.state {
                        sockdiag::TCP_LISTEN => "listening",
                        sockdiag::TCP_CLOSE | sockdiag::TCP_BOUND_INACTIVE => "bound only",
                        _ => return None,
                    }
                } else if s.dst.is_unspecified() {
                    "bound only"
                } else {
                    return None;
                };
                Some(Blocker {
                    port: s.sport,
                    kind,
                    on: s.src,
                })
            })
            .collect();
        blockers.sort_by_key(|b| b.port);
        let blocked: BTreeSet<u16> = blockers.iter().map(|b| b.port).collect();
        let mut dests: BTreeMap<(IpAddr, u16), Dest> = BTreeMap::new();
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
            }
        }
        for d in dests.values_mut() {
            d.headroom = usable.saturating_sub(d.ports.union(&blocked).count());
        }
        sources.push(Source {
            addr: a,
            in_use: held.len(),
            free_for_bind: usable.saturating_sub(held.len()),
            time_wait,
            blockers,
            dests,
            headroom_new: usable.saturating_sub(blocked.len()),
        });
    }
    Proto { name, sources }
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

fn ns_name() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

fn dest_str(d: &(IpAddr, u16)) -> String {
    match d.0 {
        IpAddr::V4(a) => format!("{a}:{}", d.1),
        IpAddr::V6(a) => format!("[{a}]:{}", d.1),
    }
}

pub fn main(a: StatusArgs) -> Res<i32> {
    let range = read_range()?;
    let tcp = sockdiag::dump(libc::IPPROTO_TCP as u8)
        .map_err(|e| fail(format!("status: SOCK_DIAG dump of TCP sockets: {e}")))?;
    let udp = sockdiag::dump(libc::IPPROTO_UDP as u8)
        .map_err(|e| fail(format!("status: SOCK_DIAG dump of UDP sockets: {e}")))?;
    let protos = [analyse("tcp", &tcp, &range), analyse("udp", &udp, &range)];
    let procs = loaded();
    if a.json {
        print!("{}", to_json(&range, &protos, &procs));
    } else if a.prometheus {
        print!("{}", to_prometheus(&range, &protos, &procs));
    } else {
        print!("{}", to_table(&range, &protos, &procs));
    }
    Ok(0)
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
                .map(|b| format!("{} {}", b.port, b.kind))
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
                    if v.headroom == 0 {
                        "0 (full)".into()
                    } else {
                        v.headroom.to_string()
                    },
                ]);
            }
            rows.push(vec![
                "  any other destination".into(),
                "0".into(),
                "0".into(),
                s.headroom_new.to_string(),
            ]);
            o.push_str(&pad(&rows));
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
            "{} processes not inspected (permission denied reading /proc/PID/maps): run as root \
             to see every process\n",
            procs.denied
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
                        "{{\"destination\": {}, \"tuples\": {}, \"time_wait\": {}, \"headroom\": {}}}",
                        json::s(&dest_str(d)),
                        v.tuples,
                        v.time_wait,
                        v.headroom
                    )
                })
                .collect();
            let bs: Vec<String> = s
                .blockers
                .iter()
                .map(|b| {
                    format!(
                        "{{\"port\": {}, \"kind\": {}, \"address\": {}}}",
                        b.port,
                        json::s(b.kind),
                        json::s(&b.on.to_string())
                    )
                })
                .collect();
            ss.push(format!(
                "{{\"source\": {}, \"ports_in_use\": {}, \"free_for_bind\": {}, \"time_wait\": {}, \
                 \"headroom_new_destination\": {}, \"blockers\": [{}], \"destinations\": [{}]}}",
                json::s(&s.addr.to_string()),
                s.in_use,
                s.free_for_bind,
                s.time_wait,
                s.headroom_new,
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
        "{{\"namespace\": {}, \"range\": {{\"low\": {}, \"high\": {}, \"reserved\": {}, \"usable\": {}}}, {}, \"loaded\": [{}], \"counters_total\": {{{}}}, \"not_inspected\": {}}}\n",
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
        procs.denied
    )
}

/// Label values escaped as the text format asks (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn to_prometheus(range: &Range, protos: &[Proto], procs: &stats::Survey) -> String {
    let mut o = String::new();
    let mut metric = |name: &str, help: &str, samples: Vec<(String, usize)>| {
        o.push_str(&format!(
            "# HELP connectx_{name} {help}\n# TYPE connectx_{name} gauge\n"
        ));
        for (labels, v) in samples {
            if labels.is_empty() {
                o.push_str(&format!("connectx_{name} {v}\n"));
            } else {
                o.push_str(&format!("connectx_{name}{{{labels}}} {v}\n"));
            }
        }
    };
    metric(
        "usable_ports",
        "Ports of ip_local_port_range not reserved, per source address.",
        vec![(String::new(), range.count())],
    );
    let src = |p: &Proto, s: &Source| {
        format!(
            "proto=\"{}\",source=\"{}\"",
            p.name,
            label(&s.addr.to_string())
        )
    };
    let per_source = |f: &dyn Fn(&Source) -> usize| -> Vec<(String, usize)> {
        protos
            .iter()
            .flat_map(|p| p.sources.iter().map(move |s| (src(p, s), f(s))))
            .collect()
    };
    metric(
        "source_ports_in_use",
        "Ports of the range held on the source address or the wildcard (any state).",
        per_source(&|s| s.in_use),
    );
    metric(
        "source_free_for_bind",
        "Ports a new bind-before-connect gets on the source address without connectx.",
        per_source(&|s| s.free_for_bind),
    );
    metric(
        "source_time_wait",
        "TCP connections in TIME_WAIT from the source address.",
        per_source(&|s| s.time_wait),
    );
    metric(
        "source_blockers",
        "Listening or bound-only sockets holding a port of the range for every destination.",
        per_source(&|s| s.blockers.len()),
    );
    metric(
        "source_headroom_new_destination",
        "Connections connectx can still open from the source to a destination not used yet.",
        per_source(&|s| s.headroom_new),
    );
    let per_dest = |f: &dyn Fn(&Dest) -> usize| -> Vec<(String, usize)> {
        let mut v = Vec::new();
        for p in protos {
            for s in &p.sources {
                for (d, x) in &s.dests {
                    v.push((
                        format!("{},destination=\"{}\"", src(p, s), label(&dest_str(d))),
                        f(x),
                    ));
                }
            }
        }
        v
    };
    metric(
        "destination_tuples",
        "4-tuples in use from the source address to the destination (TIME_WAIT included).",
        per_dest(&|d| d.tuples),
    );
    metric(
        "destination_time_wait",
        "TCP connections in TIME_WAIT from the source address to the destination.",
        per_dest(&|d| d.time_wait),
    );
    metric(
        "destination_headroom",
        "Connections connectx can still open from the source address to the destination.",
        per_dest(&|d| d.headroom),
    );
    metric(
        "processes_loaded",
        "Processes of this network namespace with libconnectx.so loaded.",
        vec![(String::new(), procs.loaded.len())],
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
            s(sockdiag::TCP_TIME_WAIT, "127.0.0.1", 100, "127.0.0.3", 7),
            s(sockdiag::TCP_LISTEN, "0.0.0.0", 103, "0.0.0.0", 0),
            s(est, "127.0.0.9", 100, "127.0.0.2", 7),
        ];
        let p = analyse("tcp", &socks, &range);
        assert_eq!(p.sources.len(), 2);
        let a = &p.sources[0];
        assert_eq!(a.addr.to_string(), "127.0.0.1");
        assert_eq!(a.in_use, 3); // 100, 101 and the wildcard listener's 103
        assert_eq!(a.free_for_bind, 1); // of 4 usable
        assert_eq!(a.time_wait, 1);
        assert_eq!(a.blockers.len(), 1);
        let to2 = &a.dests[&("127.0.0.2".parse().unwrap(), 7)];
        assert_eq!((to2.tuples, to2.headroom), (2, 1));
        let to3 = &a.dests[&("127.0.0.3".parse().unwrap(), 7)];
        assert_eq!((to3.tuples, to3.time_wait, to3.headroom), (1, 1, 2));
        assert_eq!(a.headroom_new, 3);
    }
}
