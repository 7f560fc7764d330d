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
