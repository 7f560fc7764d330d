//! `connectx _client`: a legacy client, the kind of program connectx serves.
//!
//! Opens up to N sockets round-robin over the destinations with one recipe:
//!   plain     socket + connect
//!   bind0     bind(src, 0) + connect
//!   bindany0  bind(wildcard, 0) + connect
//!   port:P    bind(src, P) + connect
//! stops at the first failure (unless --keep-going), optionally checks that
//! every socket receives the echo of its OWN payload (so a UDP socket
//! overshadowed by a duplicate 4-tuple is caught), prints one line:
//!   opened=K failed=F failed_step=STEP errno=NAME [echo_ok=A echo_bad=B]
//!   ports=DISTINCT port_list=P,... sockname_port=P (with --getsockname: the
//!   port getsockname showed between bind and connect, first socket)
//!   opts_bind=reuseaddr:R,reuseport:R,noport:N opts_connect=...
//! then holds the sockets for --hold SECS (or until stdin closes; with --bg
//! in the background).

use super::args::Args;
use super::sock::{IP_BIND_ADDRESS_NO_PORT, Sock, any_of, errno_name, family_of, wait_readable};
use super::{Res, fail, usage_err};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Bind0,
    BindAny0,
    Port(u16),
}

#[derive(Default, Clone, Copy)]
struct SetOpts {
    reuseaddr: Option<i32>,
    reuseport: Option<i32>,
    noport: Option<i32>,
}

struct Plan {
    udp: bool,
    mode: Mode,
    src: Option<IpAddr>,
    dsts: Vec<SocketAddr>,
    count: usize,
    echo: bool,
    hold: u64,
    bg: bool,
    keep_going: bool,
    /// Call getsockname between bind and connect (what some programs do).
    getsockname: bool,
    set: SetOpts,
}

const MAX_COUNT: usize = 100_000;

pub fn main(raw: Vec<std::ffi::OsString>) -> Res<i32> {
    let plan = parse(raw)?;
    let mut held: Vec<Sock> = Vec::new();
    let mut failed = 0usize;
    let mut first_fail: Option<(&'static str, String)> = None;
    let mut sockname_port = "-".to_string();
    let mut opts_bind = "-".to_string();
    let mut opts_connect = "-".to_string();
    for i in 0..plan.count {
        let dst = plan.dsts[i % plan.dsts.len()];
        let first = held.is_empty() && failed == 0;
        match open_one(&plan, &dst) {
            Ok((s, after_bind, port_seen)) => {
                if first {
                    opts_bind = after_bind;
                    sockname_port = port_seen;
                    opts_connect = view(&s);
                }
                held.push(s);
            }
            Err((step, e)) => {
                failed += 1;
                if first_fail.is_none() {
                    first_fail = Some((step, errno_name(&e)));
                }
                if !plan.keep_going {
                    break;
                }
            }
        }
    }
    let (step, errno) = first_fail.unwrap_or(("-", "-".to_string()));
    let mut line = format!(
        "opened={} failed={failed} failed_step={step} errno={errno}",
        held.len()
    );
    if plan.echo {
        let (ok, bad) = echo_check(&held);
        line.push_str(&format!(" echo_ok={ok} echo_bad={bad}"));
    }
    let ports: BTreeSet<u16> = held
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| a.port())
        .collect();
    let mut list: Vec<String> = ports.iter().take(64).map(|p| p.to_string()).collect();
    if ports.len() > 64 {
        list.push("...".into());
    }
    line.push_str(&format!(
        " ports={} port_list={} sockname_port={sockname_port} opts_bind={opts_bind} opts_connect={opts_connect}",
        ports.len(),
        if list.is_empty() { "-".to_string() } else { list.join(",") },
    ));
    if plan.hold == 0 {
        println!("{line}");
        return Ok(0);
    }
    if plan.bg {
        match super::daemon::background(&line) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => std::thread::sleep(Duration::from_secs(plan.hold)),
            Err(e) => return Err(fail(format!("_client: fork: {e}"))),
        }
    } else {
        println!("{line}");
        hold_until_stdin_closes(plan.hold);
    }
    drop(held);
    Ok(0)
}

fn parse(raw: Vec<std::ffi::OsString>) -> Res<Plan> {
    let mut a = Args::new(raw);
    let mut p = Plan {
        udp: false,
        mode: Mode::Plain,
        src: None,
        dsts: Vec::new(),
        count: 1,
        echo: false,
        hold: 0,
        bg: false,
        keep_going: false,
        getsockname: false,
        set: SetOpts::default(),
    };
    let mut proto_given = false;
    while let Some(f) = a.next_flag()? {
        match f.as_str() {
            "--proto" => {
                p.udp = match a.value()?.as_str() {
                    "tcp" => false,
                    "udp" => true,
                    v => {
                        return Err(usage_err(format!(
                            "option --proto: `{v}` is not tcp or udp"
                        )));
                    }
                };
                proto_given = true;
            }
            "--mode" => p.mode = parse_mode(&a.value()?)?,
            "--src" => p.src = Some(a.parsed::<IpAddr>("an IP address")?),
            "--dst" => {
                for d in a.value()?.split(',').filter(|d| !d.is_empty()) {
                    let addr = d.parse::<SocketAddr>().map_err(|_| {
                        usage_err(format!(
                            "option --dst: `{d}` is not an address like 127.0.0.2:7 or [::1]:7"
                        ))
                    })?;
                    p.dsts.push(addr);
                }
            }
            "--count" => {
                p.count = a.parsed::<usize>("a count")?;
                if p.count > MAX_COUNT {
                    return Err(usage_err(format!("option --count: at most {MAX_COUNT}")));
                }
            }
            "--echo" => p.echo = true,
            "--hold" => p.hold = a.parsed::<u64>("a number of seconds")?.min(3600),
            "--bg" => p.bg = true,
            "--keep-going" => p.keep_going = true,
            "--getsockname" => p.getsockname = true,
            "--reuseport" => p.set.reuseport = Some(1),
            "--set" => {
                let v = a.value()?;
                let bad = || {
                    usage_err(format!(
                        "option --set: `{v}` is not reuseaddr|reuseport|noport=0|1"
                    ))
                };
                let (name, val) = v.split_once('=').ok_or_else(bad)?;
                let val = match val {
                    "0" => 0,
                    "1" => 1,
                    _ => return Err(bad()),
                };
                match name {
                    "reuseaddr" => p.set.reuseaddr = Some(val),
                    "reuseport" => p.set.reuseport = Some(val),
                    "noport" => p.set.noport = Some(val),
                    _ => return Err(bad()),
                }
            }
            _ => return Err(a.unknown(&f, "_client")),
        }
    }
    if !a.rest().is_empty() {
        return Err(usage_err("_client: unexpected arguments"));
    }
    if !proto_given {
        return Err(usage_err("_client: --proto tcp|udp is required"));
    }
    if p.dsts.is_empty() {
        return Err(usage_err("_client: --dst A:P[,A:P...] is required"));
    }
    if p.bg && p.hold == 0 {
        return Err(usage_err("_client: --bg needs --hold SECS"));
    }
    if let Some(src) = p.src
        && p.dsts.iter().any(|d| d.is_ipv4() != src.is_ipv4())
    {
        return Err(usage_err(
            "_client: --src and --dst must be of the same address family",
        ));
    }
    Ok(p)
}

fn parse_mode(v: &str) -> Res<Mode> {
    Ok(match v {
        "plain" => Mode::Plain,
        "bind0" => Mode::Bind0,
        "bindany0" => Mode::BindAny0,
        _ => match v.strip_prefix("port:").and_then(|p| p.parse::<u16>().ok()) {
            Some(p) if p != 0 => Mode::Port(p),
            _ => {
                return Err(usage_err(format!(
                    "option --mode: `{v}` is not plain, bind0, bindany0 or port:P"
                )));
            }
        },
    })
}

type StepErr = (&'static str, std::io::Error);

/// One socket with the plan's recipe. Returns it with the option view and
/// the getsockname port read right after bind.
fn open_one(p: &Plan, dst: &SocketAddr) -> Result<(Sock, String, String), StepErr> {
    let ty = if p.udp {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    let s = Sock::new(family_of(dst), ty).map_err(|e| ("socket", e))?;
    let set = |level, opt, v: Option<i32>| match v {
        Some(v) => s.set_int(level, opt, v).map_err(|e| ("setsockopt", e)),
        None => Ok(()),
    };
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR, p.set.reuseaddr)?;
    set(libc::SOL_SOCKET, libc::SO_REUSEPORT, p.set.reuseport)?;
    // IPPROTO_IP level on IPv6 sockets too (the kernel accepts it there).
    set(libc::IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, p.set.noport)?;
    let src = p.src.unwrap_or(if dst.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    });
    let bind_to = match p.mode {
        Mode::Plain => None,
        Mode::Bind0 => Some(SocketAddr::new(src, 0)),
        Mode::BindAny0 => Some(SocketAddr::new(any_of(dst), 0)),
        Mode::Port(port) => Some(SocketAddr::new(src, port)),
    };
    let mut port_seen = "-".to_string();
    if let Some(b) = bind_to {
        s.bind(&b).map_err(|e| ("bind", e))?;
        // Only on request: asking for the port may make connectx bind it now.
        if p.getsockname {
            port_seen = s
                .local_addr()
                .map(|a| a.port().to_string())
                .unwrap_or_else(|e| errno_name(&e));
        }
    }
    let after_bind = view(&s);
    s.connect(dst).map_err(|e| ("connect", e))?;
    Ok((s, after_bind, port_seen))
}

/// The option values the program reads back (connectx must show its own).
fn view(s: &Sock) -> String {
    let get = |level, opt| match s.get_int(level, opt) {
        Ok(v) => if v != 0 { "1" } else { "0" }.to_string(),
        Err(e) => errno_name(&e),
    };
    format!(
        "reuseaddr:{},reuseport:{},noport:{}",
        get(libc::SOL_SOCKET, libc::SO_REUSEADDR),
        get(libc::SOL_SOCKET, libc::SO_REUSEPORT),
        get(libc::IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT),
    )
}

/// Send a unique payload on every socket, then check each gets its own back.
fn echo_check(held: &[Sock]) -> (usize, usize) {
    let pid = std::process::id();
    let payload = |i: usize| format!("connectx-echo {pid} {i}\n").into_bytes();
    let mut sent_ok = vec![false; held.len()];
    for (i, s) in held.iter().enumerate() {
        sent_ok[i] = s.send(&payload(i)).is_ok();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    // Every reply was sent before the first wait; once one socket has waited
    // in vain for a while, the others' replies have long arrived or never will.
    let mut per_socket_ms = 1000;
    let mut ok = 0;
    let mut buf = [0u8; 256];
    for (i, s) in held.iter().enumerate() {
        if !sent_ok[i] {
            continue;
        }
        let want = payload(i);
        let mut got = Vec::new();
        while got.len() < want.len() {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(per_socket_ms) as i32;
            if !wait_readable(s.fd(), left) {
                per_socket_ms = 100;
                break;
            }
            match s.recv(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        if got == want {
            ok += 1;
        }
    }
    (ok, held.len() - ok)
}

fn hold_until_stdin_closes(secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if wait_readable(0, left.as_millis().min(1000) as i32) {
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
        }
    }
}
