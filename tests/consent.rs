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
    assert_eq!(
        number(&with, "received"),
        20_000,
        "the server must get every datagram while the lock churns:\n{with}"
    );
}
