//! Issue 9 (UDP, kernel first): the kernel's own connect while ports are free, the lock only
//! when the kernel runs out; never a duplicate 4-tuple (races, the kernel's rewrite of 0.0.0.0,
//! device-bound owners), and no takeover of a flow's port by another user. One-port range:
//! every second flow must share.

#[path = "robust/common.rs"]
mod common;
mod cxtest;
use cxtest::netns;
use std::time::Duration;

fn echo_servers() -> String {
    let ips: Vec<String> = (2..=30).map(|i| format!("--udp 127.0.0.{i}:7")).collect();
    format!(
        "$CX _serve --udp 127.0.0.1:7 {} --seconds 60 --bg >/dev/null",
        ips.join(" ")
    )
}

/// fwmark 1, and UDP to port 8, leave for 127.0.0.2 from 127.0.0.5 (ahead of the local table).
const POLICY_ROUTES: &str = "ip rule add pref 1000 lookup local && ip rule del pref 0 && \
ip rule add pref 10 fwmark 1 lookup 100 && ip rule add pref 11 ipproto udp dport 8 lookup 100 && \
ip route add local 127.0.0.2 dev lo src 127.0.0.5 table 100 || echo 'policy routes: setup failed'";

fn case(name: &str) -> String {
    let script = format!(
        "{}\n{POLICY_ROUTES}\ntag {name} $RUN python3 $REPO/tests/udp_cases/races.py {name}",
        echo_servers()
    );
    let out = netns("40000-40000", None, true, &script);
    out.line(name)
}

#[test]
fn one_port_serves_many_destinations_with_their_own_replies() {
    let l = case("share");
    assert!(l.contains("ok=8 echoed=8 dups=0"), "{l}");
}

/// tests/robust/udprace.c on a `range`, with the library: (mode, rounds) -> its output.
fn race(range: &str, mode: &str, rounds: &str) -> common::Out {
    let ports = range
        .split_once('-')
        .and_then(|(a, b)| Some(b.parse::<u32>().ok()? - a.parse::<u32>().ok()? + 1))
        .unwrap_or(1)
        .to_string();
    common::require_root();
    let dir = common::TempDir::new("udprace");
    let ns = common::nsrun(&dir);
    let prog = common::compile(&dir, "udprace.c", "udprace");
    let lib = common::lib_path().display().to_string();
    let o = common::run(
        common::in_ns(
            &ns,
            range,
            &[("LD_PRELOAD", &lib)],
            &prog,
            &[mode, rounds, &ports],
        ),
        Duration::from_secs(120),
    );
    o.assert_ok();
    o
}

#[test]
fn concurrent_reconnects_to_one_destination_give_it_to_one_socket() {
    // 16 threads reconnect 16 sockets that share the one port to one destination at once. On
    // e0b731e two or three of them ended on that 4-tuple in most runs.
    let o = race("40000-40000", "reconnect", "200");
    assert_eq!(
        o.num("first_ok"),
        16,
        "the sockets share the port first:\n{}",
        o.describe()
    );
    assert_eq!(o.num("most_on_dst"), 1, "{}", o.describe());
}

#[test]
fn two_threads_connecting_one_socket_never_make_two_owners() {
    // One socket owns (port, 127.0.0.2:7); two threads connect a fresh socket at once, to
    // 127.0.0.3:7 and 127.0.0.2:7. On e0b731e about 2 rounds in 100 ended with a duplicate.
    for range in ["40000-40001", "40000-40003"] {
        let o = race(range, "samesocket", "3000");
        assert_eq!(o.num("owned"), 3000, "{}", o.describe());
        assert_eq!(o.num("dups"), 0, "range {range}:\n{}", o.describe());
    }
}

#[test]
fn no_false_eagain_while_other_threads_share_the_ports() {
    // 8 threads at once, each filling its own destination over a 10-port range: each must get
    // all 10 (on e0b731e about 1 fill in 20 came out short: ports another thread held locked
    // for a moment counted as taken).
    let o = race("40000-40009", "fill", "50");
    assert_eq!(o.num("fills"), 400, "{}", o.describe());
    assert_eq!(o.num("short"), 0, "{}", o.describe());
}

#[test]
fn a_check_that_cannot_be_made_never_connects_a_shared_port_unchecked() {
    // A forked child with no fd left (no netlink socket, no sentinel) reconnects a socket that
    // shares its port to the destination another socket owns on that port: EAGAIN (the kernel's
    // word for no port), never an unchecked connect. On e0b731e: EMFILE.
    let o = race("40000-40000", "emfile", "1");
    assert_eq!(
        o.num("same_port"),
        1,
        "control: the two share the port:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("child_errno"),
        libc::EAGAIN as i64,
        "{}",
        o.describe()
    );
    assert_eq!(o.num("dup"), 0, "{}", o.describe());
}

#[test]
fn connect_to_0000_is_checked_as_the_kernel_rewrites_it() {
    let l = case("anyaddr");
    assert!(l.contains("second=EAGAIN dups=0"), "{l}");
}

#[test]
fn policy_routing_by_mark_and_port_is_checked_on_the_source_the_kernel_uses() {
    let l = case("policy");
    assert!(
        l.contains("srcs=127.0.0.5,127.0.0.1,127.0.0.5"),
        "the routes must apply: {l}"
    );
    assert!(
        l.contains("first=ok by_mark=EAGAIN other_src=ok d_first=ok by_port=EAGAIN"),
        "{l}"
    );
    assert!(l.contains("dups=0"), "{l}");
}

#[test]
fn a_device_bound_owner_is_seen() {
    let l = case("device");
    assert!(l.contains("second=EAGAIN dups=0"), "{l}");
}

#[test]
fn another_user_cannot_take_a_shared_port() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test runs the attacker as uid 65534: it needs root"
    );
    let script = format!(
        "{}\ntag attack $RUN python3 $REPO/tests/udp_cases/takeover.py",
        echo_servers()
    );
    let out = netns("40000-40009", None, true, &script);
    let l = out.line("attack");
    assert!(l.contains("attacker_bound=none"), "{l}\n{out}");
    assert!(l.contains("client_got=client-query"), "{l}\n{out}");
}

/// tests/udp_cases/review.py `args` with the library on a 4-port range (the cases an attack
/// review found on this design before its fixes: each failed then, see the comments).
fn review(args: &str, before: &str) -> String {
    let name = args.split(' ').next().unwrap_or(args);
    let script =
        format!("{before}\ntag {name} $RUN python3 $REPO/tests/udp_cases/review.py {args}");
    netns("40000-40003", None, true, &script).line(name)
}

#[test]
fn the_programs_reuseport_never_reaches_an_autobind() {
    // Before: 10 of 10 runs made a duplicate 4-tuple (the program's SO_REUSEPORT was put back on a
    // socket without a port, and a send autobound it onto a shared port).
    let l = review("noport_reuseport", "");
    assert!(l.contains("sendto=EAGAIN connect=EAGAIN dups=0"), "{l}");
}

#[test]
fn a_socket_disconnected_by_a_forked_sharer_reconnects_as_the_kernels() {
    // Before: 3 of 3 runs made a duplicate (the child checked port 0).
    let l = review("fork_disconnect", "");
    assert!(l.contains("child=EAGAIN dups=0"), "{l}");
}

#[test]
fn a_fixed_port_outside_the_range_always_gets_the_kernels_connect() {
    // Before: EAGAIN in 6 of 6 runs (the memory of a full range skipped the kernel).
    let l = review("fixed_outside", "");
    assert!(l.contains("reuseaddr=ok reuseport=ok dups=0"), "{l}");
}

#[test]
fn the_programs_own_reuseport_socket_keeps_its_port() {
    // Before: the lock put a flow on the program's SO_REUSEPORT port, and a duplicate in 2 of 6.
    let l = review("fixed_reuseport_server", "");
    assert!(
        l.contains("clients=3 on_its_port=0 connect=ok dups=0"),
        "{l}"
    );
}

#[test]
fn another_user_cannot_inject_into_flows_the_lock_connects() {
    common::require_root();
    // Before: 63 of 300 flows returned a datagram from the sprayer to the program.
    let flood = "setpriv --reuid=65534 --regid=65534 --clear-groups \
        python3 $REPO/tests/udp_cases/review.py flood 30 & sleep 0.5";
    let l = review("inject 200", flood);
    assert!(l.contains("fails=0 "), "{l}");
    // What reaches the socket while the lock holds a port is dropped once it is connected; a
    // datagram the kernel was delivering at that very moment (looked up on one CPU while the
    // other drains) can still land behind the drain: seen once in 200 flows under emulation on
    // Debian's 6.1, never natively (README "Limits").
    let foreign: u32 = cxtest::field(&l, "foreign")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(foreign <= 2, "{l}");
}

#[test]
fn lockers_racing_for_one_port_never_share_a_4_tuple() {
    // Before: 1 to 3 rounds in 60 held a duplicate 4-tuple (two lockers bound the port in the
    // moment before the lock, and each took the other, unconnected, for nobody).
    let l = review("race 60", "");
    assert!(l.contains("with_dups=0"), "{l}");
}
