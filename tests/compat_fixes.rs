//! The corner cases of issue 11 that the compatibility suite (tests/compat.rs) found, each
//! without and with the library in its own namespace (10-port range). Probes: tests/compat/fixes.py.

mod cxtest;
use cxtest::{RANGE, both, netns};

const PRELUDE: &str = r#"
P="/usr/bin/python3 $REPO/tests/compat/fixes.py"
F=$(mktemp); trap 'rm -f $F' EXIT
/usr/bin/python3 $REPO/tests/compat/harness.py hold 127.0.0.2:7 127.0.0.3:7 >/dev/null
"#;

/// Every port of 127.0.0.5 held by a program without the library (plain bind + connect); then
/// bind(127.0.0.5, 0) -> getsockname -> connect: the connection must never leave from another
/// address (e0b731e: the real bind in getsockname failed, the kernel cleared the address, and the
/// connection left from 127.0.0.1).
#[test]
fn a_bind_that_finds_no_port_never_connects_from_another_source() {
    let script = format!(
        "{PRELUDE}\n$P hold 127.0.0.5 127.0.0.2 10 > $F &\n\
         k=0; while ! grep -q held $F 2>/dev/null && [ $k -lt 100 ]; do sleep 0.05; k=$((k+1)); done\n\
         tag holder cat $F\ntag probe $RUN $P source 127.0.0.5 127.0.0.3"
    );
    let (without, with) = both(RANGE, None, &script);
    for o in [&without, &with] {
        o.expect(
            "the holder has every port of 127.0.0.5",
            "holder",
            &[("held", "10")],
        );
    }
    without.expect("kernel alone", "probe", &[("bind", "errno98")]);
    let line = with.line("probe");
    let bad = line.contains("127.0.0.1") || line.contains("0.0.0.0:0");
    assert!(
        !bad,
        "with the library the socket lost its address (or left from another):\n{with}"
    );
    if line.contains("connect=ok") {
        assert!(line.contains("after_connect=127.0.0.5:"), "{with}");
    }
}

/// The same for UDP: every port of 127.0.0.5 bound by a program without the library.
#[test]
fn a_udp_bind_that_finds_no_port_never_connects_from_another_source() {
    let script = format!(
        "{PRELUDE}\n$P udp_hold 127.0.0.5 10 > $F &\n\
         k=0; while ! grep -q held $F 2>/dev/null && [ $k -lt 100 ]; do sleep 0.05; k=$((k+1)); done\n\
         tag holder cat $F\ntag probe $RUN $P source 127.0.0.5 127.0.0.3 udp"
    );
    let (without, with) = both(RANGE, None, &script);
    for o in [&without, &with] {
        o.expect(
            "the holder has every port of 127.0.0.5",
            "holder",
            &[("held", "10")],
        );
    }
    without.expect("kernel alone", "probe", &[("bind", "errno98")]);
    with.expect(
        "with the library",
        "probe",
        &[("after_bind", "127.0.0.5:0")],
    );
    let line = with.line("probe");
    if line.contains("connect=ok") {
        assert!(line.contains("after_connect=127.0.0.5:"), "{with}");
    }
}

/// After a connect that found no free port (EADDRNOTAVAIL), getsockname shows the bound address
/// with port 0, as the kernel's does for a socket whose program set IP_BIND_ADDRESS_NO_PORT
/// (e0b731e: 0.0.0.0:0, which Node prints in its error).
#[test]
fn getsockname_after_a_connect_without_a_port_keeps_the_address() {
    let script = format!(
        "{PRELUDE}\n$RUN $P hold 127.0.0.1 127.0.0.2 10 > $F &\n\
         k=0; while ! grep -q held $F 2>/dev/null && [ $k -lt 100 ]; do sleep 0.05; k=$((k+1)); done\n\
         tag holder cat $F\n\
         tag own $P source 127.0.0.1 127.0.0.2 noport late\n\
         tag probe $RUN $P source 127.0.0.1 127.0.0.2 late"
    );
    let o = netns(RANGE, None, true, &script);
    o.expect("holders", "holder", &[("held", "10")]);
    o.expect(
        "the kernel, for a program that defers the port itself",
        "own",
        &[("connect", "errno99"), ("after_connect", "127.0.0.1:0")],
    );
    o.expect(
        "with the library",
        "probe",
        &[("connect", "errno99"), ("after_connect", "127.0.0.1:0")],
    );
}

/// A fixed port shared for a destination it already serves fails at connect; that socket must
/// not keep the port from the next one, to another destination (e0b731e: EADDRINUSE for C).
#[test]
fn a_fixed_port_whose_connect_failed_does_not_block_the_port() {
    let (without, with) = both(
        RANGE,
        None,
        &format!("{PRELUDE}\ntag fixed $RUN $P fixed 5000 127.0.0.2 127.0.0.3"),
    );
    without.expect(
        "kernel alone: one socket on the port",
        "fixed",
        &[("a", "ok"), ("b", "bind_errno98"), ("c", "bind_errno98")],
    );
    with.expect(
        "with the library: one per destination",
        "fixed",
        &[("a", "ok"), ("b", "connect_errno99"), ("c", "ok")],
    );
}

/// An unconnected UDP socket whose bind(ip, 0) found no port cannot share one: its send fails with
/// the bind's error (EADDRINUSE), as a program that handles bind errors expects, not with the
/// EAGAIN of the kernel's autobind, which dnsmasq retries for a second per send (e0b731e: EAGAIN;
/// dnsmasq --server=IP@SRC then answered none of 40 queries). With CONNECTX_BIND_BUSY=kernel the
/// bind itself fails, as without the library.
#[test]
fn an_unconnected_udp_send_without_a_port_gets_the_binds_error() {
    let script = "P=\"/usr/bin/python3 $REPO/tests/compat/fixes.py\"\nF=$(mktemp)\n\
         $P udp_hold 127.0.0.1 10 > $F &\n\
         k=0; while ! grep -q held $F 2>/dev/null && [ $k -lt 100 ]; do sleep 0.05; k=$((k+1)); done\n\
         tag holder cat $F\n\
         tag probe $RUN $P udp_send 127.0.0.1 127.0.0.2\n\
         tag kernel env CONNECTX_BIND_BUSY=kernel $RUN $P udp_send 127.0.0.1 127.0.0.2\n\
         rm -f $F";
    let (without, with) = both(RANGE, None, script);
    for o in [&without, &with] {
        o.expect("the holder has every port", "holder", &[("held", "10")]);
    }
    without.expect("kernel alone", "probe", &[("bind", "errno98")]);
    with.expect(
        "with the library",
        "probe",
        &[("bind", "ok"), ("sendto", "errno98")],
    );
    with.expect(
        "CONNECTX_BIND_BUSY=kernel",
        "kernel",
        &[("bind", "errno98")],
    );
}

/// curl --local-port A-B walks the range on bind errors only. Two curls to one server, the first
/// still connected: without the library the second binds the next port. With
/// CONNECTX_BIND_BUSY=kernel it does the same; with the default (share) the first port binds,
/// held back, and the connect fails (the trade-off the README describes; e0b731e has no switch).
#[test]
fn curl_walking_a_port_range_with_bind_busy_kernel() {
    cxtest::need("curl", "curl");
    let script = "/usr/bin/python3 $REPO/tests/compat/harness.py slowhttp 127.0.0.2:80 --delay 3 >/dev/null\n\
        $RUN curl -sS --max-time 10 --local-port 30000-30009 http://127.0.0.2/ >/dev/null 2>&1 &\n\
        sleep 1\n\
        tag default $RUN curl -sS --max-time 10 --local-port 30000-30009 http://127.0.0.2/\n\
        tag kernel env CONNECTX_BIND_BUSY=kernel $RUN curl -sS --max-time 10 --local-port 30000-30009 http://127.0.0.2/\n\
        wait";
    let (without, with) = both(RANGE, None, script);
    assert!(
        without.line("default").starts_with("ok 127.0.0.2"),
        "{without}"
    );
    assert!(
        with.line("kernel").starts_with("ok 127.0.0.2"),
        "with CONNECTX_BIND_BUSY=kernel the second curl must walk to a free port:\n{with}"
    );
    assert!(
        with.line("default").contains("(7)"),
        "the default shares the first port and fails at connect (README):\n{with}"
    );
}
