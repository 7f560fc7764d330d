//! Real programs under the library: nc (netcat-openbsd), curl and dig (via
//! the scripts in scripts/, which make their own namespaces).

mod cxtest;
use cxtest::{RANGE, both, cmd, cx, lib, need, repo};
use std::path::Path;

#[test]
fn nc_s_connects_while_the_range_is_full_of_connections_elsewhere() {
    need("nc", "netcat-openbsd");
    let script = r#"
$CX _serve --tcp 127.0.0.2:7 --tcp 127.0.0.3:7 --seconds 60 --bg >/dev/null
tag filler $CX _client --proto tcp --dst 127.0.0.2:7 --count 10 --hold 60 --bg
out=$($RUN nc -z -w 3 -s 127.0.0.1 127.0.0.3 7 2>&1); rc=$?
echo "nc rc=$rc out=$(printf '%s' "$out" | tr ' \n' '_ ')"
"#;
    let (without, with) = both(RANGE, None, script);
    for o in [&without, &with] {
        o.expect(
            "another program holds every port towards 127.0.0.2",
            "filler",
            &[("opened", "10")],
        );
    }
    let rc = without.get("nc", "rc");
    assert_ne!(
        rc, "0",
        "without the library nc -s should fail (bind EADDRINUSE):\n{without}"
    );
    assert!(without.line("nc").contains("bind_failed"), "{without}");
    with.expect("nc -s with the library", "nc", &[("rc", "0")]);
}

fn script_env() -> Vec<(&'static str, String)> {
    vec![
        ("CONNECTX_BIN", cx().display().to_string()),
        ("CONNECTX_LIB", lib().display().to_string()),
    ]
}

#[test]
fn curl_local_port_twice_script() {
    need("curl", "curl");
    let env = script_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = cmd(
        Path::new("bash"),
        &[repo().join("scripts/curl-demo.sh").to_str().unwrap()],
        &env,
    );
    let without = o.stdout.split("with connectx:").next().unwrap_or("");
    assert!(
        without.contains("run 2: failed: curl: (45) bind failed with errno 98"),
        "without the library the second curl should fail with errno 98:\n{o}"
    );
    assert_eq!(
        o.code,
        Some(0),
        "with the library both curl runs must succeed:\n{o}"
    );
    assert!(o.stdout.contains("PASS"), "{o}");
}

#[test]
fn dig_b_while_every_udp_port_is_held_script() {
    need("dig", "bind9-dnsutils");
    need("dnsmasq", "dnsmasq-base");
    let env = script_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = cmd(
        Path::new("bash"),
        &[repo().join("scripts/dig-demo.sh").to_str().unwrap()],
        &env,
    );
    let without = o
        .stdout
        .lines()
        .find(|l| l.starts_with("without connectx:"))
        .unwrap_or("");
    assert!(
        without.contains("exit 9") && without.contains("address in use"),
        "without the library dig should fail with `address in use`:\n{o}"
    );
    for mode in ["without", "with"] {
        let held = o
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("service {mode} connectx:")))
            .unwrap_or("");
        assert!(
            held.contains(" ports=10 "),
            "the service must hold every port ({mode} connectx):\n{o}"
        );
    }
    assert_eq!(
        o.code,
        Some(0),
        "with the library dig must get its answer:\n{o}"
    );
}
