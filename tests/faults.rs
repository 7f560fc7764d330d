//! Faults (issue 5, item 3): the library under conditions it does not control.
//! - SOCK_DIAG/netlink unavailable (seccomp makes socket(AF_NETLINK) fail with EPERM): the
//!   kernel's own behaviour, one warning line, every socket still works;
//! - RLIMIT_NOFILE reached while the UDP lock must swap in a fresh socket: EMFILE, no fd leak;
//! - a log file that cannot be opened; bad values in every variable.
//!
//! Every program runs in a fresh network namespace (tests/robust/nsrun.c) with a 10-port range.

#[path = "robust/common.rs"]
mod common;
mod cxtest;

use common::*;
use std::time::Duration;

const R10: &str = "40000-40009";
const T: Duration = Duration::from_secs(60);

struct Setup {
    _dir: TempDir,
    dir: std::path::PathBuf,
    ns: std::path::PathBuf,
    client: std::path::PathBuf,
    lib: String,
}

fn setup(tag: &str) -> Setup {
    require_root();
    let lib = lib_path().display().to_string();
    let dir = TempDir::new(tag);
    let ns = nsrun(&dir);
    let client = compile(&dir, "client.c", "client");
    Setup {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        ns,
        client,
        lib,
    }
}

impl Setup {
    fn client(&self, env: &[(&str, &str)], args: &[&str]) -> Out {
        run(in_ns(&self.ns, R10, env, &self.client, args), T)
    }
    fn with_lib(&self, extra: &[(&'static str, &str)], args: &[&str]) -> Out {
        let mut env: Vec<(&str, &str)> = vec![("LD_PRELOAD", &self.lib)];
        env.extend_from_slice(extra);
        self.client(&env, args)
    }
}

/// The words of stdout that describe behaviour (everything the client prints).
fn behaviour(o: &Out) -> String {
    o.stdout.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn netlink_unavailable_falls_back_to_the_kernel_and_warns_once() {
    let s = setup("faults-netlink");
    // Control: with netlink, the library is at work (R x D = 30).
    let on = s.with_lib(&[], &["udp", "3", "40", "0"]);
    on.assert_ok();
    assert_eq!(
        on.num("connected"),
        30,
        "control: the library should give R x D:\n{}",
        on.describe()
    );

    for (bind, what) in [("0", "connect"), ("1", "bind(127.0.0.1,0)+connect")] {
        let args = ["--deny-netlink", "udp", "3", "40", bind];
        let kernel = s.client(&[], &args);
        kernel.assert_ok();
        assert_eq!(kernel.get("netlink_denied"), "1", "{}", kernel.describe());
        assert_eq!(kernel.num("connected"), 10, "{}", kernel.describe());

        let log = s.dir.join(format!("netlink-{bind}.log"));
        let log_s = log.display().to_string();
        let o = s.with_lib(&[("CONNECTX_LOG_FILE", &log_s)], &args);
        o.assert_ok();
        assert_eq!(o.get("netlink_denied"), "1", "{}", o.describe());
        // Nothing lost: every socket that connected still echoes.
        assert_eq!(
            o.num("echoed"),
            o.num("connected"),
            "UDP {what} without netlink: a connected socket did not echo:\n{}",
            o.describe()
        );
        assert_eq!(
            o.num("inrange"),
            o.num("connected"),
            "UDP {what}: local addresses not (127.0.0.1, port in range):\n{}",
            o.describe()
        );
        // Exactly the kernel's behaviour: same count, same errno, same failing call.
        let (mine, theirs) = (
            behaviour(&o).replace("netlink_denied=1 ", ""),
            behaviour(&kernel).replace("netlink_denied=1 ", ""),
        );
        assert!(
            mine == theirs,
            "UDP {what} without netlink: the library should fall back to the kernel's own \
             behaviour\n  kernel alone:     {theirs}\n  with the library: {mine}"
        );
        // One warning line, in the log file; nothing on stderr.
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "UDP {what}: expected exactly one log line, got:\n{text}"
        );
        assert!(
            lines[0].contains("warn") && lines[0].contains("UDP lock unavailable"),
            "unexpected warning: {}",
            lines[0]
        );
        assert!(
            o.stderr.is_empty(),
            "nothing on stderr expected:\n{}",
            o.stderr
        );
    }

    // Same with the warning on stderr (no log file), and TCP, which needs no netlink for
    // bind-before-connect, keeps its R x D.
    let o = s.with_lib(&[], &["--deny-netlink", "udp", "3", "40", "0"]);
    assert_eq!(o.num("connected"), 10, "{}", o.describe());
    assert_eq!(o.connectx_lines().len(), 1, "{}", o.describe());
    let t = s.with_lib(&[], &["--deny-netlink", "tcp", "3", "40"]);
    assert_eq!(
        t.num("tcp_connected"),
        30,
        "TCP bind+connect must not depend on netlink:\n{}",
        t.describe()
    );
}

/// RLIMIT_NOFILE reached at connect (tests/robust/emfile.c): 9 of 10 ports already connected
/// to the destination. A UDP connect needs no fd of ours (the kernel's own connect, and the lock
/// never swaps in a fresh socket), so every connect succeeds, none says EMFILE (the old lock
/// did: issue 9), and nothing leaks.
#[test]
fn fd_limit_at_connect() {
    let s = setup("faults-emfile");
    let prog = compile(&s._dir, "emfile.c", "emfile");
    let o = run(
        in_ns(&s.ns, R10, &[("LD_PRELOAD", &s.lib)], &prog, &["60"]),
        T,
    );
    o.assert_ok();
    for (key, want) in [
        ("emfile", 0),
        ("other", 0),
        ("success", 60),
        ("leaks", 0),
        ("echo_bad", 0),
        ("held_ok", 9),
        ("one_spare_ok", 60),
    ] {
        assert_eq!(o.num(key), want, "{key}:\n{}", o.describe());
    }
}

#[test]
fn log_file_that_cannot_be_opened_gives_one_line_and_the_program_works() {
    let s = setup("faults-logfile");
    let adir = s.dir.join("a-directory");
    std::fs::create_dir(&adir).unwrap();
    let adir = adir.display().to_string();
    for path in ["/nonexistent/dir/x", adir.as_str()] {
        let o = s.with_lib(&[("CONNECTX_LOG_FILE", path)], &["udp", "3", "40", "1"]);
        o.assert_ok();
        assert_eq!(o.num("connected"), 30, "{}", o.describe());
        assert_eq!(o.num("echoed"), 30, "{}", o.describe());
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr for CONNECTX_LOG_FILE={path}:\n{}",
            o.describe()
        );
        assert!(
            lines[0].starts_with("connectx[")
                && lines[0].contains("CONNECTX_LOG_FILE")
                && lines[0].contains(path),
            "the line should name the variable and the path: {}",
            lines[0]
        );
    }
    assert!(!std::path::Path::new("/nonexistent/dir/x").exists());
}

/// A FIFO nobody reads: opening it for writing would block forever. The program must not hang
/// at load (the log may go to stderr instead).
#[test]
fn log_file_that_is_a_fifo_without_reader_does_not_hang_the_program() {
    let s = setup("faults-fifo");
    let fifo = s.dir.join("fifo");
    let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: a valid path string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let fifo_s = fifo.display().to_string();
    let mut cmd = in_ns(
        &s.ns,
        R10,
        &[("LD_PRELOAD", &s.lib), ("CONNECTX_LOG_FILE", &fifo_s)],
        &s.client,
        &["udp", "3", "40", "0"],
    );
    cmd.env_remove("X");
    // run() fails the test if the program hangs past the timeout.
    let o = run(cmd, Duration::from_secs(10));
    o.assert_ok();
    assert_eq!(o.num("connected"), 30, "{}", o.describe());
}

#[test]
fn bad_values_in_every_variable_are_named_once_and_the_defaults_apply() {
    let s = setup("faults-badvalues");
    let bad: [(&'static str, &str, &str); 6] = [
        ("CONNECTX", "maybe", "1 or 0"),
        ("CONNECTX_TCP", "2", "1 or 0"),
        ("CONNECTX_UDP", "enabled", "1 or 0"),
        ("CONNECTX_LOG", "loud", "off, error, warn, info, debug"),
        ("CONNECTX_GETSOCKNAME", "portzero", "bind, port0"),
        ("CONNECTX_BIND_BUSY", "always", "share, kernel"),
    ];
    // The default behaviour, for reference.
    let reference: Vec<Out> = [
        &["udp", "3", "40", "1"][..],
        &["tcp", "3", "40"][..],
        &["gsn"][..],
    ]
    .iter()
    .map(|a| s.with_lib(&[], a))
    .collect();
    assert_eq!(reference[0].num("connected"), 30);
    assert_eq!(reference[1].num("tcp_connected"), 30);

    let check = |env: &[(&'static str, &str)], expect: &[(&str, &str, &str)]| {
        let outs = [
            s.with_lib(env, &["udp", "3", "40", "1"]),
            s.with_lib(env, &["tcp", "3", "40"]),
            s.with_lib(env, &["gsn"]),
        ];
        for o in &outs {
            o.assert_ok();
            let lines = o.connectx_lines();
            assert_eq!(
                lines.len(),
                expect.len(),
                "expected one line per bad variable {:?}:\n{}",
                expect.iter().map(|e| e.0).collect::<Vec<_>>(),
                o.describe()
            );
            assert_eq!(
                o.stderr.lines().count(),
                lines.len(),
                "only connectx lines expected on stderr:\n{}",
                o.stderr
            );
            for (var, val, accepted) in expect {
                let n = lines
                    .iter()
                    .filter(|l| l.contains(&format!("{var}={val}")) && l.contains(accepted))
                    .count();
                assert_eq!(
                    n, 1,
                    "one line naming {var}, {val:?} and what is accepted ({accepted}):\n{}",
                    o.stderr
                );
            }
        }
        assert_eq!(
            outs[0].num("connected"),
            30,
            "UDP: default behaviour expected (R x D)\n{}",
            outs[0].describe()
        );
        assert_eq!(outs[0].num("echoed"), 30, "{}", outs[0].describe());
        assert_eq!(
            outs[1].num("tcp_connected"),
            30,
            "TCP: default behaviour expected\n{}",
            outs[1].describe()
        );
        // getsockname default (bind): a real port right after bind(ip, 0).
        assert!(outs[2].num("udp_gsn_port") != 0 && outs[2].num("tcp_gsn_port") != 0);
    };
    for b in &bad {
        check(&[(b.0, b.1)], &[*b]);
    }
    let all: Vec<(&'static str, &str)> = bad.iter().map(|b| (b.0, b.1)).collect();
    check(&all, &bad);
    // A very long and non-UTF-8-looking value still gives one line and no crash.
    let long = "x".repeat(5000);
    check(
        &[("CONNECTX_UDP", long.as_str())],
        &[("CONNECTX_UDP", &long[..100], "")],
    );
}

/// IPPROTO_IP, IP_LOCAL_PORT_RANGE (Linux 6.3; Debian's 6.1 has it from 6.1.33).
const IP_LOCAL_PORT_RANGE: &str = "51";

/// The info lines the library wrote (the one line naming what this kernel lacks, if any).
/// The info lines about this kernel (the operator's other info lines, a source that ran out of
/// ports or the first fallback of a kind, are not about features).
fn info_lines(o: &Out) -> Vec<&str> {
    o.connectx_lines()
        .into_iter()
        .filter(|l| {
            l.contains(" info: ")
                && !l.contains("ran out of ports")
                && !l.contains("first fallback")
        })
        .collect()
}

/// A kernel without IP_LOCAL_PORT_RANGE (a seccomp filter answers ENOPROTOOPT for it, as a
/// vanilla 6.1 does): the program's own setsockopt gets that kernel's ENOPROTOOPT, there is no
/// UDP lock (it binds one port at a time through the option: UDP is the kernel's own, R), and one
/// info line names the missing option. With the option, the lock honours the program's range,
/// as the kernel does.
#[test]
fn kernel_without_ip_local_port_range_is_answered_as_that_kernel_answers() {
    let s = setup("faults-portrange");
    let info = [("CONNECTX_LOG", "info")];
    let udp = ["udp", "3", "40", "0"];
    let ranged: Vec<&str> = ["--port-range", "40002", "40003"]
        .into_iter()
        .chain(udp)
        .collect();
    let deny = ["--deny-sockopt", "0", IP_LOCAL_PORT_RANGE];

    // With the option: 2 ports, so the kernel gives 2 and the library 2 x 3, all in the range.
    let kernel = s.client(&[], &ranged);
    kernel.assert_ok();
    assert_eq!(kernel.get("prange_set"), "0", "{}", kernel.describe());
    assert_eq!(kernel.num("connected"), 2, "{}", kernel.describe());
    let o = s.with_lib(&info, &ranged);
    o.assert_ok();
    assert_eq!(o.get("prange_set"), "0", "{}", o.describe());
    assert_eq!(
        (o.num("connected"), o.num("in_sock_range"), o.num("echoed")),
        (6, 6, 6),
        "the UDP lock must keep to the socket's IP_LOCAL_PORT_RANGE (R x D = 2 x 3):\n{}",
        o.describe()
    );
    assert!(
        info_lines(&o)
            .iter()
            .all(|l| !l.contains("IP_LOCAL_PORT_RANGE")),
        "this kernel has IP_LOCAL_PORT_RANGE:\n{}",
        o.describe()
    );

    // Without it.
    let denied: Vec<&str> = deny.into_iter().chain(ranged.iter().copied()).collect();
    let kernel = s.client(&[], &denied);
    kernel.assert_ok();
    assert_eq!(kernel.get("sockopt_denied"), "1", "{}", kernel.describe());
    assert_eq!(
        kernel.num("prange_set"),
        libc::ENOPROTOOPT as i64,
        "{}",
        kernel.describe()
    );
    assert_eq!(kernel.num("connected"), 10, "{}", kernel.describe());
    let o = s.with_lib(&info, &denied);
    o.assert_ok();
    assert_eq!(
        o.num("prange_set"),
        libc::ENOPROTOOPT as i64,
        "the program must get the kernel's own answer (ENOPROTOOPT):\n{}",
        o.describe()
    );
    assert_eq!(
        (o.num("connected"), o.num("inrange"), o.num("echoed")),
        (10, 10, 10),
        "without IP_LOCAL_PORT_RANGE there is no UDP lock (it binds one port at a time through \
         it): the kernel's own R = 10:\n{}",
        o.describe()
    );
    let lines = info_lines(&o);
    assert_eq!(lines.len(), 1, "one info line expected:\n{}", o.describe());
    assert!(
        lines[0].contains("this kernel lacks")
            && lines[0].contains("IP_LOCAL_PORT_RANGE (Linux 6.3"),
        "the info line must name IP_LOCAL_PORT_RANGE: {}",
        lines[0]
    );
    // At the default level (warn) nothing is written.
    let quiet = s.with_lib(&[], &denied);
    assert!(quiet.connectx_lines().is_empty(), "{}", quiet.describe());
}

/// A kernel without SO_COOKIE (seccomp answers ENOPROTOOPT): the UDP lock cannot know its own
/// socket, so UDP gets exactly the kernel's behaviour (never a blind lock that could put two
/// sockets on one 4-tuple), TCP keeps R x D, and one info line says why.
#[test]
fn kernel_without_so_cookie_gets_the_kernels_udp_and_one_info_line() {
    let s = setup("faults-cookie");
    for bind in ["0", "1"] {
        let args = ["--deny-sockopt", "1", "57", "udp", "3", "40", bind];
        let kernel = s.client(&[], &args);
        kernel.assert_ok();
        assert_eq!(kernel.get("sockopt_denied"), "1", "{}", kernel.describe());
        let o = s.with_lib(&[("CONNECTX_LOG", "info")], &args);
        o.assert_ok();
        assert_eq!(
            behaviour(&o),
            behaviour(&kernel),
            "UDP (bind {bind}) without SO_COOKIE: the kernel's own behaviour expected"
        );
        assert_eq!(o.num("connected"), 10, "{}", o.describe());
        let lines = info_lines(&o);
        assert_eq!(lines.len(), 1, "one info line expected:\n{}", o.describe());
        assert!(
            lines[0].contains("SO_COOKIE (Linux 4.12): no UDP lock"),
            "{}",
            lines[0]
        );
    }
    let t = s.with_lib(&[], &["--deny-sockopt", "1", "57", "tcp", "3", "40"]);
    assert_eq!(t.num("tcp_connected"), 30, "{}", t.describe());
}

/// A feature is probed only when a call needs it (issue 17: a UDP lock's connects never walk
/// the TCP hash for the bound-only TCP dump), so a UDP program gets no info line about what the
/// kernel lacks for TCP, on any kernel (before, Debian's 6.1 printed "bound-only TCP sockets
/// (Linux 6.5)" for it). Where the UDP lock's own needs are met, nothing is said at all.
#[test]
fn a_udp_program_gets_no_info_line_about_tcp_features() {
    let s = setup("faults-features");
    let o = s.with_lib(&[("CONNECTX_LOG", "info")], &["udp", "3", "40", "0"]);
    o.assert_ok();
    assert_eq!(o.num("connected"), 30, "{}", o.describe());
    let lines = info_lines(&o);
    assert!(
        lines.is_empty(),
        "a UDP program asks nothing of TCP's features:\n{}",
        o.describe()
    );
}
