//! Issue 3 (UDP through the REUSEADDR lock), end to end: fresh namespaces,
//! 10-port range, three 127.0.0.x echo destinations. Every socket must get
//! the echo of its own datagram, and /proc/net/udp must never show two
//! sockets on one 4-tuple.

mod cxtest;
use cxtest::{DSTS, Out, RANGE, both, field};

/// UDP echo servers on the three destinations (port 7).
const SERVE: &str =
    "$CX _serve --udp 127.0.0.2:7 --udp 127.0.0.3:7 --udp 127.0.0.4:7 --seconds 60 --bg >/dev/null";

/// Sum of opened= over every `opened=` line (concurrent clients).
fn total_opened(o: &Out) -> usize {
    o.stdout
        .lines()
        .filter(|l| l.starts_with("opened="))
        .filter_map(|l| field(l, "opened")?.parse::<usize>().ok())
        .sum()
}

#[test]
fn bind0_and_plain_connect_reach_r_times_d_each_with_its_own_replies() {
    for (mode, kernel_step, kernel_errno) in [
        ("bind0", "bind", "EADDRINUSE"),
        ("plain", "connect", "EAGAIN"),
        ("bindany0", "bind", "EADDRINUSE"),
    ] {
        let script = format!(
            "{SERVE}\ntag client $RUN $CX _client --proto udp --mode {mode} --dst {DSTS} --count 31 --echo --hold 30 --bg\ntag dups $CX _dups"
        );
        let (without, with) = both(RANGE, None, &script);
        without.expect(
            &format!("UDP {mode} without the library: R in total"),
            "client",
            &[
                ("opened", "10"),
                ("failed_step", kernel_step),
                ("errno", kernel_errno),
                ("echo_ok", "10"),
            ],
        );
        with.expect(
            &format!(
                "UDP {mode} with the library: R×D, each socket gets its own reply, then EAGAIN"
            ),
            "client",
            &[
                ("opened", "30"),
                ("failed_step", "connect"),
                ("errno", "EAGAIN"),
                ("echo_ok", "30"),
                ("echo_bad", "0"),
            ],
        );
        with.expect(
            &format!("UDP {mode} with the library: no duplicate 4-tuple while held"),
            "dups",
            &[("udp_connected", "30"), ("udp_dups", "0")],
        );
    }
}

#[test]
fn concurrent_processes_get_exactly_the_capacity_and_no_duplicates() {
    // 6 processes × 12 sockets = 72 attempts for 30 slots, all at once.
    let script = format!(
        r#"{SERVE}
for i in 1 2 3 4 5 6; do
  $RUN $CX _client --proto udp --mode bind0 --dst {DSTS} --count 12 --keep-going --echo --hold 30 --bg &
done
wait
tag dups $CX _dups
"#
    );
    let (without, with) = both(RANGE, None, &script);
    assert_eq!(total_opened(&without), 10, "kernel: R in total:\n{without}");
    assert_eq!(
        total_opened(&with),
        30,
        "with the library: exactly R×D in total:\n{with}"
    );
    for l in with.stdout.lines().filter(|l| l.starts_with("opened=")) {
        assert_eq!(
            field(l, "echo_bad").as_deref(),
            Some("0"),
            "a socket got someone else's reply: {l}\n{with}"
        );
        let e = field(l, "errno").unwrap_or_default();
        assert!(
            e == "-" || e == "EAGAIN",
            "only EAGAIN at exhaustion: {l}\n{with}"
        );
    }
    with.expect(
        "concurrent connects",
        "dups",
        &[("udp_connected", "30"), ("udp_dups", "0")],
    );
}

#[test]
fn so_reuseport_sockets_to_one_destination_get_no_duplicates() {
    // dig's recipe: SO_REUSEPORT before bind(ip,0). The kernel alone hands out
    // already-connected ports to such sockets; the lock must hold anyway.
    let script = r#"
$CX _serve --udp 127.0.0.2:7 --seconds 60 --bg >/dev/null
tag one $RUN $CX _client --proto udp --mode bind0 --reuseport --dst 127.0.0.2:7 --count 11 --echo --hold 30 --bg
tag dups1 $CX _dups
for i in 1 2 3; do
  $RUN $CX _client --proto udp --mode bind0 --reuseport --dst 127.0.0.2:7 --count 10 --keep-going --echo --hold 30 --bg &
done
wait
tag dups2 $CX _dups
"#;
    let (without, o) = both(RANGE, None, script);
    // Kernel alone: 11 sockets in 10 ports to one destination all "succeed",
    // so at least one 4-tuple is shared and some socket gets another's reply.
    without.expect(
        "SO_REUSEPORT, kernel: no error at R+1",
        "one",
        &[("opened", "11")],
    );
    let dups: usize = without.get("dups1", "udp_dups").parse().unwrap_or(0);
    let bad: usize = without.get("one", "echo_bad").parse().unwrap_or(0);
    assert!(
        dups >= 1 && bad >= 1,
        "kernel alone should show duplicate 4-tuples here:\n{without}"
    );
    o.expect(
        "SO_REUSEPORT, one destination: R sockets, then EAGAIN",
        "one",
        &[
            ("opened", "10"),
            ("failed_step", "connect"),
            ("errno", "EAGAIN"),
            ("echo_ok", "10"),
        ],
    );
    o.expect(
        "SO_REUSEPORT: no duplicates",
        "dups1",
        &[("udp_connected", "10"), ("udp_dups", "0")],
    );
    o.expect(
        "SO_REUSEPORT, more processes: still no duplicates",
        "dups2",
        &[("udp_connected", "10"), ("udp_dups", "0")],
    );
}

#[test]
fn fixed_port_udp_server_keeps_its_port() {
    let script = r#"
$RUN $CX _serve --udp 127.0.0.1:5353 --seconds 60 --bg >/dev/null
$CX _serve --udp 127.0.0.2:7 --seconds 60 --bg >/dev/null
tag plain $RUN $CX _client --proto udp --mode port:5353 --dst 127.0.0.2:7 --count 1
tag reuseaddr $RUN $CX _client --proto udp --mode port:5353 --set reuseaddr=1 --dst 127.0.0.2:7 --count 1
tag lib-client env LD_PRELOAD=$LIB $CX _client --proto udp --mode port:5353 --set reuseaddr=1 --dst 127.0.0.2:7 --count 1
tag reach $RUN $CX _client --proto udp --dst 127.0.0.1:5353 --count 1 --echo
"#;
    let (without, with) = both(RANGE, None, script);
    let refused = [
        ("opened", "0"),
        ("failed_step", "bind"),
        ("errno", "EADDRINUSE"),
    ];
    for (o, what) in [
        (&without, "without the library"),
        (&with, "with the library"),
    ] {
        o.expect(
            &format!("{what}: second bind of the server's port"),
            "plain",
            &refused,
        );
        o.expect(
            &format!("{what}: second bind with SO_REUSEADDR"),
            "reuseaddr",
            &refused,
        );
        o.expect(
            &format!("{what}: a client under the library"),
            "lib-client",
            &refused,
        );
        o.expect(
            &format!("{what}: the server still answers"),
            "reach",
            &[("opened", "1"), ("echo_ok", "1")],
        );
    }
}

#[test]
fn reserved_ports_are_honoured() {
    // Range 40010-40021 with 40011,40014-40018,40019 reserved: 5 usable ports.
    let (range, reserved) = ("40010-40021", Some("40011,40014-40018,40019"));
    let usable = "40010,40012,40013,40020,40021";
    for (mode, kernel_step, kernel_errno) in [
        ("bind0", "bind", "EADDRINUSE"),
        ("plain", "connect", "EAGAIN"),
    ] {
        let script = format!(
            "{SERVE}\ntag client $RUN $CX _client --proto udp --mode {mode} --dst {DSTS} --count 16 --echo --hold 30 --bg\ntag dups $CX _dups"
        );
        let (without, with) = both(range, reserved, &script);
        without.expect(
            &format!("UDP {mode}, reserved ports, kernel"),
            "client",
            &[
                ("opened", "5"),
                ("failed_step", kernel_step),
                ("errno", kernel_errno),
                ("port_list", usable),
            ],
        );
        with.expect(
            &format!("UDP {mode}, reserved ports, with the library: 5 per destination"),
            "client",
            &[
                ("opened", "15"),
                ("failed_step", "connect"),
                ("errno", "EAGAIN"),
                ("port_list", usable),
                ("echo_ok", "15"),
            ],
        );
        with.expect(
            "reserved ports: no duplicates",
            "dups",
            &[("udp_dups", "0")],
        );
    }
}

#[test]
fn ipv6_loopback_capacity_and_no_duplicates() {
    // A new namespace's loopback has only ::1: one destination, capacity R.
    let script = r#"
$CX _serve --udp [::1]:7 --seconds 60 --bg >/dev/null
tag plain $RUN $CX _client --proto udp --mode plain --dst [::1]:7 --count 11 --echo
tag bind0 $RUN $CX _client --proto udp --mode bind0 --dst [::1]:7 --count 11 --echo --hold 30 --bg
tag dups $CX _dups
"#;
    let (without, with) = both(RANGE, None, script);
    without.expect(
        "IPv6 bind0, kernel",
        "bind0",
        &[
            ("opened", "10"),
            ("failed_step", "bind"),
            ("errno", "EADDRINUSE"),
        ],
    );
    for (tag, what) in [
        ("plain", "IPv6 connect"),
        ("bind0", "IPv6 bind(::1,0) + connect"),
    ] {
        with.expect(
            &format!("{what} with the library: R, then EAGAIN"),
            tag,
            &[
                ("opened", "10"),
                ("failed_step", "connect"),
                ("errno", "EAGAIN"),
                ("echo_ok", "10"),
            ],
        );
    }
    with.expect(
        "IPv6: no duplicates",
        "dups",
        &[("udp_connected", "10"), ("udp_dups", "0")],
    );
}

#[test]
fn dual_stack_socket_to_v4_mapped_destinations() {
    // AF_INET6 sockets bound to [::]:0 talking to ::ffff:127.0.0.x.
    let dsts = "[::ffff:127.0.0.2]:7,[::ffff:127.0.0.3]:7,[::ffff:127.0.0.4]:7";
    let script = format!(
        "{SERVE}\ntag client $RUN $CX _client --proto udp --mode bindany0 --dst {dsts} --count 31 --echo --hold 30 --bg\ntag dups $CX _dups"
    );
    let (without, with) = both(RANGE, None, &script);
    without.expect(
        "dual-stack, kernel",
        "client",
        &[
            ("opened", "10"),
            ("failed_step", "bind"),
            ("errno", "EADDRINUSE"),
        ],
    );
    with.expect(
        "dual-stack with the library: R×D",
        "client",
        &[
            ("opened", "30"),
            ("failed_step", "connect"),
            ("errno", "EAGAIN"),
            ("echo_ok", "30"),
        ],
    );
    with.expect("dual-stack: no duplicates", "dups", &[("udp_dups", "0")]);
}
