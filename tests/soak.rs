//! Soak (issue 5, item 6), short version: 20,000 connects under the library (TCP and UDP,
//! bind-before-connect and plain, 20 destinations, a 200-port range, 2,000 sockets held at a
//! time, so UDP needs the 4-tuple sharing). After every batch: no duplicate connected 4-tuple
//! in /proc/net/udp or /proc/net/tcp; at the end: as many fds as after the first batch and flat
//! VmRSS. The long version (1,000,000 connects) is scripts/soak.sh.

#[path = "robust/common.rs"]
mod common;
mod cxtest;

use common::*;
use std::time::Duration;

#[test]
fn twenty_thousand_connects_leak_nothing_and_never_duplicate_a_4_tuple() {
    require_root();
    let lib = lib_path().display().to_string();
    let dir = TempDir::new("soak");
    let ns = nsrun(&dir);
    let prog = compile(&dir, "soak.c", "soak");
    let o = run(
        in_ns(
            &ns,
            "40000-40199",
            &[("LD_PRELOAD", &lib)],
            &prog,
            &["20000", "2000", "20", "1"],
        ),
        Duration::from_secs(120),
    );
    o.assert_ok();
    eprintln!("soak: {}", o.stdout.lines().last().unwrap_or(""));
    assert_eq!(o.num("connects"), 20_000, "{}", o.describe());
    assert_eq!(o.num("failures"), 0, "connects failed:\n{}", o.describe());
    assert_eq!(
        o.num("duplicates"),
        0,
        "duplicate 4-tuples:\n{}",
        o.describe()
    );
    assert!(
        o.num("max_connected_rows") >= 1000,
        "sockets were not held (sampling saw too few):\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("fd_start"),
        o.num("fd_end"),
        "fd leak:\n{}",
        o.describe()
    );
    let (start, end) = (o.num("rss_start_kb"), o.num("rss_end_kb"));
    assert!(
        end - start < 2048,
        "memory grew by {} kB:\n{}",
        end - start,
        o.describe()
    );
    assert!(o.stderr.is_empty(), "library messages:\n{}", o.stderr);
}
