//! Issue 17: the UDP lock and fixed ports share only by consent. Each test is a scenario that
//! behaves correctly without the library and failed with it before issue 17 (checked on main
//! `3049b2a`). Fresh namespaces, loopback only, bounded; they check behaviour, not time (the
//! costs are in bench/run.py).

mod cxtest;
use cxtest::{Out, field, netns};

/// The scenarios' driver (one line of key=value per step).
const PY: &str = "python3 $REPO/tests/consent_cases/consent.py";

fn value(o: &Out, key: &str) -> Option<String> {
    o.stdout.lines().find_map(|l| field(l, key))
}

fn number(o: &Out, key: &str) -> usize {
    value(o, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in the output:\n{o}"))
}

/// Why 1: a UDP server not under connectx, with SO_REUSEPORT, bound on a port inside the range,
/// while a connectx client of the same user churns connects through the lock (every other port
/// held by connectx flows). Before: the lock's bind joined the server's reuseport group and
/// dropped what the kernel handed it (hundreds of 20,000). Now: 0 lost.
#[test]
fn a_reuseport_server_loses_no_datagram_to_the_lock() {
    let script = format!(
        r#"T=$(mktemp -d)
python3 $REPO/tests/consent_cases/consent.py server 40000 20000 30 > $T/server 2>$T/ready &
for i in $(seq 200); do [ -s $T/ready ] && break; sleep 0.05; done
$RUN {PY} hold 127.0.0.2 9 30 &
sleep 0.5
$RUN {PY} churn 127.0.0.3 4 &
sleep 0.3
{PY} send 40000 20000
wait %3
wait %1
cat $T/server
kill %2 2>/dev/null
rm -rf $T
"#
    );
    let with = netns("40000-40009", None, true, &script);
    assert_eq!(number(&with, "held"), 9, "{with}");
    assert!(
        number(&with, "churn_ok") > 100,
        "the churn must go through the lock (it shares the 9 flows' ports):\n{with}"
    );
    // Every datagram reaches the server's socket: received, or dropped there by the kernel when
    // its receive buffer was full (a slow machine: the kernel lane's emulation), never taken by
    // the lock's socket. On the host none is dropped.
    assert_eq!(
        number(&with, "received") + number(&with, "drops"),
        20_000,
        "the server must get every datagram while the lock churns:\n{with}"
    );
}

/// Echo servers (not under connectx) on `addrs`, started and waited for.
fn echo(addrs: &str) -> String {
    format!(
        r#"E=$(mktemp)
{PY} echo {addrs} 60 2>$E &
for i in $(seq 200); do [ -s $E ] && break; sleep 0.05; done
rm -f $E
"#
    )
}

/// Why 5: s1 binds (ip, P) and connects to A; s2 binds (ip, P) (shared: fine) and its connect
/// to A fails (A's 4-tuple is taken); s3 binds (ip, P) to reach B. Before: s3's bind failed
/// (EADDRINUSE: s2 kept P exclusively). Now s2 never held P, and s3 reaches B; IPv4 and IPv6.
#[test]
fn a_failed_connect_on_a_shared_fixed_port_gives_the_port_back() {
    let script = format!(
        "{}tag v4 $RUN {PY} fixed 4\ntag v6 $RUN {PY} fixed 6\n",
        echo("127.0.0.1:7 127.0.0.1:8 [::1]:7 [::1]:8")
    );
    let with = netns("40000-40009", None, true, &script);
    for v in ["v4", "v6"] {
        with.expect(
            &format!("{v}: s2 shares P but cannot take A's 4-tuple; s3 reaches B from P"),
            v,
            &[
                ("s1", "echo"),
                ("s2_bind", "ok"),
                ("s2_connect", "EADDRNOTAVAIL"),
                ("s3_bind", "ok"),
                ("s3_port", "45000"),
                ("s3", "echo"),
                ("s1_again", "echo"),
            ],
        );
    }
}

/// Why 4: a server's first worker sets SO_REUSEPORT and binds 127.0.0.1:0, three more bind that
/// port with SO_REUSEPORT. Before: 1 of 4 bound under connectx (getsockopt said 1 all the same).
/// Now 4 of 4, as without it, and the group delivers every datagram.
#[test]
fn a_servers_workers_all_bind_their_reuseport_group() {
    let with = netns(
        "40000-40009",
        None,
        true,
        &format!("tag w $RUN {PY} workers"),
    );
    with.expect(
        "4 of 4 workers bind; the group gets all 200 datagrams",
        "w",
        &[("bound", "4"), ("reuseport", "1"), ("received", "200")],
    );
}

/// Why 3: program A connects to S (connectx opens its port to sharing); program B, also under
/// connectx, binds A's source port with its own SO_REUSEPORT and connects to S. Before: both on
/// one 4-tuple, each getting the other's answers. Now B's connect to S gets EADDRNOTAVAIL (as TCP
/// says), B reaches S2 from that port with its own answers, and A gets only its own.
#[test]
fn two_programs_never_share_a_4_tuple() {
    let script = format!("{}tag ab $RUN {PY} a\n", echo("127.0.0.2:7 127.0.0.3:7"));
    let with = netns("40000-40009", None, true, &script);
    with.expect(
        "B may bind A's port but not take A's 4-tuple; each gets only its own answers",
        "ab",
        &[
            ("a_before", "own"),
            ("b_bind", "ok"),
            ("b_to_s", "EADDRNOTAVAIL"),
            ("b_to_s2", "ok"),
            ("b_to_s2_echo", "own"),
            ("a_own", "20"),
            ("a_stray", "0"),
        ],
    );
}

/// Why 6: a program fills its namespace's range (so the lock has read that namespace's ports),
/// moves to a new namespace (unshare), sets another range and reserved ports there, and fills it.
/// Before: the lock used the first namespace's copy for up to a second. Now the second
/// namespace's ports at once: its 5 free ports shared, none reserved or outside its range, and
/// the sixth connect gets EAGAIN.
#[test]
fn a_second_namespaces_ports_are_honoured_at_once() {
    let with = netns(
        "40000-40009",
        None,
        true,
        &format!("tag ns $RUN {PY} netns"),
    );
    with.expect(
        "the new namespace's range and reserved ports, at once",
        "ns",
        &[
            ("first_ns_shared", "1"),
            ("second_ns_shared", "5"),
            ("ports_allowed", "yes"),
            ("errors", "EAGAIN"),
        ],
    );
}

/// Why 7: a UDP flow whose port connectx shares reaches another program across exec (an
/// inherited fd), which reconnects it onto a 4-tuple another socket owns. Before: the kernel's
/// connect, unchecked (a duplicate 4-tuple). Now the library adopts the inherited flow when it
/// loads, and the reconnect is refused (EADDRNOTAVAIL, as for every shared fixed port).
#[test]
fn an_inherited_flow_cannot_reconnect_onto_a_taken_4_tuple() {
    let with = netns(
        "40000-40009",
        None,
        true,
        &format!("tag inh $RUN {PY} inherit"),
    );
    with.expect(
        "the inherited flow's reconnect onto a taken 4-tuple is refused",
        "inh",
        &[("child_reconnect", "EADDRNOTAVAIL")],
    );
}
