//! Compatibility suite: real Debian programs, each without and with the library in its own
//! network namespace (10-port range, destinations 127.0.0.2, .3 and .4), N = 40 jobs at once.
//! Each case asserts capacity (jobs that did their job: bytes echoed, HTTP bodies, DNS answers),
//! that the library never does worse than the kernel alone, and 0 duplicate 4-tuples with it.
//! The scripts and configurations are in tests/compat/ (one file per program); each prints
//! `result ok=K fail=F`, `dups ...`, `errors ...` and `version ...`.
//! `scripts/compat.sh` runs the same cases and prints the README's table.

mod cxtest;
use cxtest::{Out, RANGE, field, need, netns};

struct Case {
    script: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// (tool, Debian package) the case needs.
    tools: &'static [(&'static str, &'static str)],
    /// Jobs that did their job, inclusive bounds, without and with the library.
    without: (u32, u32),
    with: (u32, u32),
}

struct Run {
    ok: u32,
    out: Out,
}

fn run(name: &str, case: &Case) {
    for (tool, package) in case.tools {
        need(tool, package);
    }
    let mut script = String::new();
    for (k, v) in case.env {
        script.push_str(&format!("export {k}='{v}'\n"));
    }
    let fixed_n = case.env.iter().find(|(k, _)| *k == "COMPAT_N");
    if let (Ok(n), None) = (std::env::var("COMPAT_N"), fixed_n) {
        script.push_str(&format!("export COMPAT_N={n}\n"));
    }
    script.push_str(&format!(". \"$REPO/tests/compat/{}.sh\"\n", case.script));
    // Both halves at once, each in its own namespace.
    let (without, with) = std::thread::scope(|s| {
        let a = s.spawn(|| netns(RANGE, None, false, &script));
        let b = s.spawn(|| netns(RANGE, None, true, &script));
        (a.join().unwrap(), b.join().unwrap())
    });
    let parse = |out: Out| {
        let ok = out
            .get("result", "ok")
            .parse()
            .unwrap_or_else(|_| panic!("{name}: bad result line:\n{out}"));
        Run { ok, out }
    };
    let (without, with) = (parse(without), parse(with));
    let errors = |r: &Run| {
        let e = r.out.line("errors");
        if e.trim().is_empty() {
            "-".to_string()
        } else {
            e.trim().to_string()
        }
    };
    let dup_count = |r: &Run| {
        let d = r.out.line("dups");
        ["tcp_dups", "udp_dups"]
            .iter()
            .filter_map(|k| field(&d, k)?.parse::<u32>().ok())
            .sum::<u32>()
    };
    eprintln!(
        "| {name} | {} | {} → {} | {} → {} | without: {} / with: {} |",
        with.out.line("version"),
        without.ok,
        with.ok,
        dup_count(&without),
        dup_count(&with),
        errors(&without),
        errors(&with)
    );
    // Bounds hold for the smoke run's job counts; a longer run checks the rest only.
    let scaled = fixed_n.is_none() && std::env::var("COMPAT_N").is_ok_and(|n| n != "40");
    assert!(
        with.ok > 0,
        "{name}: no job did its job with the library:\n{}",
        with.out
    );
    if !scaled {
        let (lo, hi) = case.without;
        assert!(
            (lo..=hi).contains(&without.ok),
            "{name} without the library: {} jobs did their job, expected {lo}..={hi}:\n{}",
            without.ok,
            without.out
        );
        let (lo, hi) = case.with;
        assert!(
            (lo..=hi).contains(&with.ok),
            "{name} with the library: {} jobs did their job, expected {lo}..={hi}:\n{}",
            with.ok,
            with.out
        );
    }
    assert!(
        with.ok >= without.ok,
        "{name}: worse with the library ({} → {}):\n--- without\n{}\n--- with\n{}",
        without.ok,
        with.ok,
        without.out,
        with.out
    );
    let dups = with.out.line("dups");
    for k in ["tcp_dups", "udp_dups"] {
        assert_eq!(
            field(&dups, k).as_deref(),
            Some("0"),
            "{name}: duplicate 4-tuples with the library:\n{}",
            with.out
        );
    }
}

const HTTP: &[(&str, &str)] = &[("python3", "python3")];

macro_rules! case {
    ($name:ident, $($field:ident: $value:expr),* $(,)?) => {
        #[test]
        fn $name() {
            run(stringify!($name), &Case { $($field: $value),* });
        }
    };
}

// Programs that already defer the port themselves (IP_BIND_ADDRESS_NO_PORT): untouched, R×D.
case!(haproxy_source, script: "haproxy", env: &[], tools: &[("haproxy", "haproxy")],
      without: (30, 30), with: (30, 30));
case!(nginx_proxy_bind_port0, script: "nginx", env: &[("NGINX_BIND", "port0")],
      tools: &[("nginx", "nginx")], without: (30, 30), with: (30, 30));
case!(curl_interface, script: "curl", env: &[("CURL_OPTS", "--interface 127.0.0.1")],
      tools: &[("curl", "curl")], without: (30, 30), with: (30, 30));

// bind(ip, 0) + connect: R without, R×D with.
case!(squid_tcp_outgoing_address, script: "squid", env: &[],
      tools: &[("squid", "squid")], without: (10, 10), with: (30, 30));
case!(ssh_b, script: "ssh", env: &[("COMPAT_DELAY", "5")],
      tools: &[("ssh", "openssh-client"), ("sshd", "openssh-server"), ("ssh-keygen", "openssh-client")],
      without: (10, 10), with: (30, 30));
case!(wget_bind_address, script: "wget", env: &[], tools: &[("wget", "wget")],
      without: (10, 10), with: (30, 30));
case!(socat_bind, script: "socat", env: &[], tools: &[("socat", "socat")],
      without: (10, 10), with: (30, 30));
case!(python_client, script: "lang", env: &[("LANG_CLIENT", "python")], tools: HTTP,
      without: (10, 10), with: (30, 30));
case!(node_local_address, script: "lang", env: &[("LANG_CLIENT", "node")],
      tools: &[("node", "nodejs")], without: (10, 10), with: (30, 30));
case!(java_socket_bind, script: "lang", env: &[("LANG_CLIENT", "java"), ("COMPAT_DELAY", "5")],
      tools: &[("java", "openjdk-17-jdk-headless")], without: (10, 10), with: (30, 30));
case!(perl_local_addr, script: "lang", env: &[("LANG_CLIENT", "perl")],
      tools: &[("perl", "perl")], without: (10, 10), with: (30, 30));

// Fixed source ports: one connection per destination. (A job that starts after another one
// finished may find the port free again, hence the small slack.)
case!(nginx_proxy_bind_fixed, script: "nginx", env: &[("NGINX_BIND", "fixed")],
      tools: &[("nginx", "nginx")], without: (1, 2), with: (3, 6));
case!(curl_local_port, script: "curl", env: &[("CURL_OPTS", "--local-port 5000")],
      tools: &[("curl", "curl")], without: (1, 2), with: (3, 6));
// curl walks the range on bind errors only.
case!(curl_local_port_range, script: "curl",
      env: &[("CURL_OPTS", "--local-port 30000-30009"), ("CONNECTX_BIND_BUSY", "kernel")],
      tools: &[("curl", "curl")], without: (10, 10), with: (10, 30));

// UDP.
// dig sets SO_REUSEPORT: the kernel alone hands out ports already connected to the same server
// (duplicate 4-tuples: one of the two never gets its answer).
case!(dig_b, script: "dig", env: &[("DIG", "dig")], tools: &[("dig", "bind9-dnsutils")],
      without: (10, 39), with: (30, 30));
case!(kdig_b, script: "dig", env: &[("DIG", "kdig")], tools: &[("kdig", "knot-dnsutils")],
      without: (10, 10), with: (10, 30));
// unbound picks random ports itself, outside the ephemeral range.
case!(unbound_outgoing_interface, script: "unbound", env: &[],
      tools: &[("unbound", "unbound")], without: (40, 40), with: (40, 40));
// On a failed bind dnsmasq shares a socket it has: every query answered.
case!(dnsmasq_server_at_src, script: "dnsmasq",
      env: &[("DNSMASQ", "src"), ("CONNECTX_BIND_BUSY", "kernel")],
      tools: &[("dnsmasq", "dnsmasq-base")], without: (40, 40), with: (40, 40));
// Unconnected sockets on kernel-chosen ports: nothing to share. With more queries at once than
// ports, dnsmasq alone stalls (0 to 20 of 40 answered), so this case asks only as many as fit.
case!(dnsmasq_default, script: "dnsmasq", env: &[("DNSMASQ", "default"), ("COMPAT_N", "8")],
      tools: &[("dnsmasq", "dnsmasq-base")], without: (8, 8), with: (8, 8));
