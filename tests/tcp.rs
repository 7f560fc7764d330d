//! Issue 2 (TCP), end to end: each scenario in fresh network namespaces with a
//! 10-port range and three 127.0.0.x echo destinations, without the library
//! (the kernel's figure) and with it.

mod cxtest;
use cxtest::{DSTS, RANGE, both, netns};

/// Echo servers on the three destinations (port 7).
const SERVE: &str =
    "$CX _serve --tcp 127.0.0.2:7 --tcp 127.0.0.3:7 --tcp 127.0.0.4:7 --seconds 60 --bg >/dev/null";

#[test]
fn bind_before_connect_reaches_r_times_d() {
    for mode in ["bind0", "bindany0"] {
        let script = format!(
            "{SERVE}\ntag client $RUN $CX _client --proto tcp --mode {mode} --dst {DSTS} --count 31 --echo"
        );
        let (without, with) = both(RANGE, None, &script);
        without.expect(
            &format!("{mode} without the library: R in total"),
            "client",
            &[
                ("opened", "10"),
                ("failed_step", "bind"),
                ("errno", "EADDRINUSE"),
            ],
        );
        with.expect(
            &format!("{mode} with the library: R×D, then the kernel's connect EADDRNOTAVAIL"),
            "client",
            &[
                ("opened", "30"),
                ("failed_step", "connect"),
                ("errno", "EADDRNOTAVAIL"),
                ("echo_ok", "30"),
            ],
        );
    }
}

#[test]
fn fixed_source_port_serves_one_connection_per_destination() {
    // The fourth socket goes to the first destination again.
    let script = format!(
        "{SERVE}\ntag client $RUN $CX _client --proto tcp --mode port:5000 --dst {DSTS},127.0.0.2:7 --count 4 --echo"
    );
    let (without, with) = both(RANGE, None, &script);
    without.expect(
        "fixed port without the library",
        "client",
        &[
            ("opened", "1"),
            ("failed_step", "bind"),
            ("errno", "EADDRINUSE"),
        ],
    );
    if !cxtest::tcp_fixed_port_sharing() {
        // Before Linux 6.5 a server between bind and listen is invisible to SOCK_DIAG, so the
        // library shares no fixed TCP port (src/features.rs): exactly the kernel's answer.
        with.expect(
            "fixed port with the library on a kernel without bound-only SOCK_DIAG dumps",
            "client",
            &[
                ("opened", "1"),
                ("failed_step", "bind"),
                ("errno", "EADDRINUSE"),
            ],
        );
        return;
    }
    with.expect(
        "fixed port with the library: one per destination, second to the same one refused",
        "client",
        &[
            ("opened", "3"),
            ("failed_step", "connect"),
            ("errno", "EADDRNOTAVAIL"),
            ("echo_ok", "3"),
            ("port_list", "5000"),
        ],
    );
}

#[test]
fn server_binding_port_0_reads_its_port_before_listen() {
    // The server (under test) does bind(127.0.0.1:0) → getsockname → listen.
    let script = r#"
ready=$($RUN $CX _serve --tcp 127.0.0.1:0 --seconds 60 --bg)
echo "server $ready"
addr=${ready#*tcp=}; addr=${addr%% *}
tag client $RUN $CX _client --proto tcp --dst "$addr" --count 1 --echo
tag listening sh -c "grep -c ' 0A ' /proc/net/tcp"
"#;
    let (without, with) = both(RANGE, None, script);
    for (o, what) in [
        (&without, "without the library"),
        (&with, "with the library"),
    ] {
        let addr = o.get("server", "tcp");
        let port: u16 = addr.rsplit(':').next().unwrap_or("0").parse().unwrap_or(0);
        assert_ne!(
            port, 0,
            "{what}: getsockname before listen gave port 0:\n{o}"
        );
        o.expect(
            &format!("{what}: a client reaches the server"),
            "client",
            &[("opened", "1"), ("echo_ok", "1")],
        );
    }
}

#[test]
fn getsockname_between_bind_and_connect() {
    // bind is the kernel's while ports are free, so getsockname shows the real port (as without
    // the library), and the sockets whose bind found no port still connect: R×D, also for a
    // client that reads its address after every bind (Java). port0 keeps the same figures.
    // Each in its own namespace: the clients' TIME_WAITs must not interfere.
    let client =
        format!("$CX _client --proto tcp --mode bind0 --getsockname --dst {DSTS} --count 31");
    let (without, with) = both(RANGE, None, &format!("{SERVE}\ntag default $RUN {client}"));
    let p = without.get("default", "sockname_port");
    assert!(
        p.parse::<u16>().is_ok_and(|p| p != 0),
        "kernel shows the bound port:\n{without}"
    );
    without.expect("kernel alone", "default", &[("opened", "10")]);
    let p = with.get("default", "sockname_port");
    assert!(
        p.parse::<u16>().is_ok_and(|p| p != 0),
        "with the library (default) getsockname must show a real port:\n{with}"
    );
    // Those that got a port from getsockname's bind are shared by later sockets with SO_REUSEADDR,
    // which is fixed-port sharing: on kernels without it (before 6.5, src/features.rs) the
    // kernel's R, as without the library.
    let want = if cxtest::tcp_fixed_port_sharing() {
        "30"
    } else {
        "10"
    };
    with.expect(
        "with the library: R×D although getsockname follows every bind (R before 6.5)",
        "default",
        &[("opened", want)],
    );
    let o = netns(
        RANGE,
        None,
        true,
        &format!("{SERVE}\ntag port0 env CONNECTX_GETSOCKNAME=port0 $RUN {client}"),
    );
    o.expect(
        "CONNECTX_GETSOCKNAME=port0: R×D kept",
        "port0",
        &[("opened", "30"), ("failed_step", "connect")],
    );
}

#[test]
fn a_bound_fixed_port_not_yet_listening_stays_exclusive() {
    let script = r#"
$RUN $CX _serve --bind-only 127.0.0.1:5000 --seconds 60 --bg >/dev/null
$CX _serve --tcp 127.0.0.2:7 --seconds 60 --bg >/dev/null
tag plain $RUN $CX _client --proto tcp --mode port:5000 --dst 127.0.0.2:7 --count 1
tag reuseaddr $RUN $CX _client --proto tcp --mode port:5000 --set reuseaddr=1 --dst 127.0.0.2:7 --count 1
tag lib-client env LD_PRELOAD=$LIB $CX _client --proto tcp --mode port:5000 --set reuseaddr=1 --dst 127.0.0.2:7 --count 1
"#;
    let (without, with) = both(RANGE, None, script);
    let refused = [
        ("opened", "0"),
        ("failed_step", "bind"),
        ("errno", "EADDRINUSE"),
    ];
    for (o, what) in [
        (&without, "server without the library"),
        (&with, "server and client with the library"),
    ] {
        o.expect(
            &format!("{what}: client bind to the server's port"),
            "plain",
            &refused,
        );
        o.expect(
            &format!("{what}: client with SO_REUSEADDR"),
            "reuseaddr",
            &refused,
        );
        o.expect(
            &format!("{what}: client under the library"),
            "lib-client",
            &refused,
        );
    }
}

#[test]
fn getsockopt_shows_the_programs_own_values() {
    let script = r#"
$CX _serve --tcp 127.0.0.2:7 --udp 127.0.0.2:7 --seconds 60 --bg >/dev/null
c() { $RUN $CX _client --dst 127.0.0.2:7 --count 1 "$@"; }
tag tcp-bind0 c --proto tcp --mode bind0
tag tcp-port c --proto tcp --mode port:5001
tag tcp-ones c --proto tcp --mode bind0 --set reuseaddr=1 --set reuseport=1 --set noport=1
tag tcp-port-ra c --proto tcp --mode port:5002 --set reuseaddr=1
tag tcp-plain c --proto tcp --mode plain
tag udp-bind0 c --proto udp --mode bind0
tag udp-plain c --proto udp --mode plain
tag udp-rp c --proto udp --mode bind0 --reuseport
tag udp-port c --proto udp --mode port:5003
tag udp-ones c --proto udp --mode bind0 --set reuseaddr=1 --set reuseport=1 --set noport=1
"#;
    let (without, with) = both(RANGE, None, script);
    let zeros = "reuseaddr:0,reuseport:0,noport:0";
    let ones = "reuseaddr:1,reuseport:1,noport:1";
    let want = [
        ("tcp-bind0", zeros),
        ("tcp-port", zeros),
        ("tcp-ones", ones),
        ("tcp-port-ra", "reuseaddr:1,reuseport:0,noport:0"),
        ("tcp-plain", zeros),
        ("udp-bind0", zeros),
        ("udp-plain", zeros),
        ("udp-rp", "reuseaddr:0,reuseport:1,noport:0"),
        ("udp-port", zeros),
        ("udp-ones", ones),
    ];
    for (o, what) in [(&without, "kernel"), (&with, "with the library")] {
        for (tag, view) in want {
            o.expect(
                &format!("{what}: {tag} getsockopt view"),
                tag,
                &[("opened", "1"), ("opts_bind", view), ("opts_connect", view)],
            );
        }
    }
}

#[test]
fn connectx_0_leaves_the_program_as_it_is() {
    let script = format!(
        "{SERVE}\n$CX _serve --udp 127.0.0.2:7 --udp 127.0.0.3:7 --udp 127.0.0.4:7 --seconds 60 --bg >/dev/null
tag tcp env CONNECTX=0 LD_PRELOAD=$LIB $CX _client --proto tcp --mode bind0 --dst {DSTS} --count 31
tag udp env CONNECTX=0 LD_PRELOAD=$LIB $CX _client --proto udp --mode plain --dst {DSTS} --count 31"
    );
    let o = netns(RANGE, None, false, &script);
    o.expect(
        "CONNECTX=0, TCP",
        "tcp",
        &[
            ("opened", "10"),
            ("failed_step", "bind"),
            ("errno", "EADDRINUSE"),
        ],
    );
    o.expect(
        "CONNECTX=0, UDP",
        "udp",
        &[
            ("opened", "10"),
            ("failed_step", "connect"),
            ("errno", "EAGAIN"),
        ],
    );
}

#[test]
fn connectx_tcp_0_and_udp_0_switch_one_half_off() {
    let script = format!(
        "{SERVE}\n$CX _serve --udp 127.0.0.2:7 --udp 127.0.0.3:7 --udp 127.0.0.4:7 --seconds 60 --bg >/dev/null
tag tcp-off env CONNECTX_TCP=0 LD_PRELOAD=$LIB $CX _client --proto tcp --mode bind0 --dst {DSTS} --count 31
tag udp-off env CONNECTX_UDP=0 LD_PRELOAD=$LIB $CX _client --proto udp --mode bind0 --dst {DSTS} --count 31"
    );
    let o = netns(RANGE, None, false, &script);
    o.expect(
        "CONNECTX_TCP=0",
        "tcp-off",
        &[
            ("opened", "10"),
            ("failed_step", "bind"),
            ("errno", "EADDRINUSE"),
        ],
    );
    o.expect(
        "CONNECTX_UDP=0",
        "udp-off",
        &[
            ("opened", "10"),
            ("failed_step", "bind"),
            ("errno", "EADDRINUSE"),
        ],
    );
}

#[test]
fn connectx_run_preloads_the_library_end_to_end() {
    let script = format!(
        "{SERVE}\ntag run $CX run -- $CX _client --proto tcp --mode bind0 --dst {DSTS} --count 31 --echo"
    );
    let o = netns(RANGE, None, false, &script);
    o.expect(
        "connectx run -- bind-before-connect client",
        "run",
        &[
            ("opened", "30"),
            ("failed_step", "connect"),
            ("errno", "EADDRNOTAVAIL"),
            ("echo_ok", "30"),
        ],
    );
}
