//! Process-life tests: threads, fork while other threads are inside hooks, vfork/posix_spawn/exec
//! children that inherit LD_PRELOAD and the settings, the dup family, closes that bypass `close()`
//! followed by fd reuse, and a socket handed between threads.
//!
//! The checks live in `tests/diff/life.c` (each test enters its own network namespace, asserts
//! its outcomes, and is bounded by `alarm()`); this file builds it, runs each test with
//! `libconnectx.so` preloaded (and without it, as a check that the test itself is right) and
//! kills it if it hangs.

mod cxtest;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(150);

/// The library, built first (shared helper: a clean clone or a changed library must not run
/// against a missing or stale build).
fn library() -> PathBuf {
    cxtest::lib()
}

fn life_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = cxtest::target_dir().join("cxdiff");
        std::fs::create_dir_all(&dir).expect("create output directory");
        let out = dir.join("life");
        let tmp = dir.join(format!("life.{}", std::process::id()));
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/diff/life.c");
        let status = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lpthread")
            .status()
            .expect("run cc (gcc must be installed)");
        assert!(status.success(), "compiling {} failed", src.display());
        std::fs::rename(&tmp, &out).expect("install life binary");
        out
    })
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    secs: f64,
}

/// Runs `life TEST` with or without the library; kills it after TIMEOUT.
fn run(test: &str, preload: bool, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(life_bin());
    cmd.arg(test)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("CONNECTX") || k.starts_with("LIFE_") {
            cmd.env_remove(&k);
        }
    }
    if preload {
        cmd.env("LD_PRELOAD", library());
    } else {
        cmd.env_remove("LD_PRELOAD");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start life");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ro = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let re = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > cxtest::scaled(TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("life {test} (preload {preload}) hung: killed after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Outcome {
        code: status.code(),
        stdout: ro.join().unwrap(),
        stderr: re.join().unwrap(),
        secs: start.elapsed().as_secs_f64(),
    };
    println!(
        "life {test} (preload {preload}, {env:?}): {:?} in {:.2}s\n{}{}",
        out.code, out.secs, out.stdout, out.stderr
    );
    out
}

fn assert_ok(test: &str, preload: bool, env: &[(&str, &str)]) {
    let o = run(test, preload, env);
    assert!(
        o.code == Some(0) && o.stdout.contains(&format!("OK {test}")),
        "life {test} {} the library failed (exit {:?}):\n{}{}",
        if preload { "with" } else { "without" },
        o.code,
        o.stdout,
        o.stderr
    );
}

#[test]
fn threads_hammering_connects() {
    assert_ok("threads", false, &[]);
    assert_ok("threads", true, &[]);
}

/// 8 threads x 20 TCP bind(ip,0)+connect and UDP connects over 8 destinations with 10 ports:
/// impossible for the kernel alone, routine with connectx.
#[test]
fn threads_beyond_the_port_range() {
    let bare = run("threads_capacity", false, &[]);
    assert!(
        bare.code == Some(1) && bare.stdout.contains("FAIL"),
        "without the library this test must run out of ports (else it proves nothing):\n{}",
        bare.stdout
    );
    assert_ok("threads_capacity", true, &[]);
}

#[test]
fn fork_while_threads_are_in_hooks() {
    assert_ok("fork", false, &[]);
    assert_ok("fork", true, &[]);
}

/// vfork+exec, posix_spawn (with a close file action), fork+exec:
/// the child sees LD_PRELOAD and the CONNECTX* settings, has the library mapped, and the settings
/// take effect in it (TCP bind(ip,0)+connect over 2 destinations with R = 10: 20 with connectx,
/// 10 with CONNECTX_TCP=0 or without the library); the parent's own socket state is intact.
#[test]
fn children_inherit_library_and_settings() {
    assert_ok(
        "spawn",
        true,
        &[
            ("CONNECTX_LOG", "warn"),
            ("CONNECTX_TCP", "1"),
            ("LIFE_EXPECT_PRELOAD", "1"),
            ("LIFE_EXPECT_VARS", "CONNECTX_LOG=warn,CONNECTX_TCP=1"),
            ("LIFE_EXPECT_CAPACITY", "20"),
        ],
    );
    assert_ok(
        "spawn",
        true,
        &[
            ("CONNECTX_TCP", "0"),
            ("LIFE_EXPECT_PRELOAD", "1"),
            ("LIFE_EXPECT_VARS", "CONNECTX_TCP=0"),
            ("LIFE_EXPECT_CAPACITY", "10"),
        ],
    );
    assert_ok(
        "spawn",
        false,
        &[("LIFE_EXPECT_PRELOAD", "0"), ("LIFE_EXPECT_CAPACITY", "10")],
    );
}

/// A vfork child shares the parent's memory but has its own fd table: its hooked `close()`/`dup2()`
/// of inherited sockets must not change the parent's socket state (program's option values, the
/// deferred bind address).
#[test]
fn vfork_child_closes_do_not_touch_parent_state() {
    assert_ok("vforkclose", false, &[("LIFE_EXPECT_PRELOAD", "0")]);
    assert_ok("vforkclose", true, &[("LIFE_EXPECT_PRELOAD", "1")]);
}

#[test]
fn dup_family_keeps_state() {
    assert_ok("dup", false, &[]);
    assert_ok("dup", true, &[]);
}

#[test]
fn raw_close_and_close_range_then_fd_reuse() {
    assert_ok("closereuse", false, &[]);
    assert_ok("closereuse", true, &[]);
}

#[test]
fn socket_handed_between_threads() {
    assert_ok("handoff", false, &[]);
    assert_ok("handoff", true, &[]);
}

/// Children made without fork handlers (`_Fork`, a raw `clone`) get their own UDP destination
/// checked by the lock: connectx reads it with the child's own pid, not one remembered from the
/// parent. The parent holds all 10 ports to one destination, so the only right answer for the
/// child is EAGAIN (reading the parent's memory would connect a duplicate 4-tuple).
#[test]
fn raw_fork_children_read_their_own_memory() {
    assert_ok("rawfork", true, &[]);
}

// ---- The library's own fds and the program's (issue 10): tests/robust/ownfds.c, each run in a
// fresh network namespace (tests/robust/nsrun.c), without the library (the control: the
// program's own outcome) and with it.

#[path = "robust/common.rs"]
mod common;

const WIDE: &str = "40000-40999";

struct Own {
    _dir: common::TempDir,
    dir: PathBuf,
    ns: PathBuf,
    prog: PathBuf,
}

fn ownfds(tag: &str) -> Own {
    common::require_root();
    let dir = common::TempDir::new(tag);
    let ns = common::nsrun(&dir);
    let prog = common::compile(&dir, "ownfds.c", "ownfds");
    Own {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        ns,
        prog,
    }
}

impl Own {
    fn run(&self, preload: bool, env: &[(&str, &str)], args: &[&str]) -> common::Out {
        let lib = library().display().to_string();
        let mut all: Vec<(&str, &str)> = env.to_vec();
        if preload {
            all.push(("LD_PRELOAD", &lib));
        }
        let o = common::run(
            common::in_ns(&self.ns, WIDE, &all, &self.prog, args),
            Duration::from_secs(120),
        );
        println!(
            "ownfds {args:?} (preload {preload}, {env:?}):\n{}",
            o.describe()
        );
        o.assert_ok();
        o
    }
}

/// closefrom(3) closes the library's netlink sockets behind the close/close_range hooks (glibc
/// calls close_range internally). The program's next TCP connections take the lowest numbers;
/// the next UDP connects must not write a SOCK_DIAG request into one of them, read its peer's
/// bytes or close it. Same after a raw close_range system call, which no hook sees.
#[test]
fn closefrom_then_tcp_connections_are_not_touched_by_udp_connects() {
    let s = ownfds("life-closefrom-tcp");
    // "raw": close_range by system call, past every hook: only the identity check can tell.
    for (preload, how) in [(false, ""), (true, ""), (true, "raw")] {
        let o = s.run(preload, &[], &["closefrom-tcp", how]);
        assert_eq!(o.num("udp_ok"), 3, "{}", o.describe());
        let pairs = o.num("pairs");
        assert_eq!(
            o.num("open"),
            pairs,
            "a TCP connection was closed:\n{}",
            o.describe()
        );
        assert_eq!(
            o.num("peer"),
            pairs,
            "a TCP connection lost its peer:\n{}",
            o.describe()
        );
        assert_eq!(
            o.num("hello"),
            pairs,
            "a TCP connection's 5 bytes from its peer were read by someone else:\n{}",
            o.describe()
        );
        assert_eq!(
            o.num("junk_bytes"),
            0,
            "a TCP peer received bytes the program never sent:\n{}",
            o.describe()
        );
    }
}

/// closefrom(3), then the program opens a file (fd 3, the log file's number on e0b731e): the
/// library's log lines must not land in it (they were going to the log file before).
#[test]
fn closefrom_then_a_file_of_the_program_gets_no_log_lines() {
    let s = ownfds("life-closefrom-log");
    let log = s.dir.join("connectx.log");
    let file = s.dir.join("mine.txt");
    let (log_s, file_s) = (log.display().to_string(), file.display().to_string());
    let env = [
        ("CONNECTX_LOG", "debug"),
        ("CONNECTX_LOG_FILE", log_s.as_str()),
    ];
    let o = s.run(true, &env, &["closefrom-log", &file_s]);
    assert_eq!(o.num("udp_ok"), 6, "{}", o.describe());
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.lines().any(|l| l.contains("connect(fd")),
        "control: the UDP connects before closefrom should be in the log file:\n{logged}"
    );
    let mine = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        mine,
        "mine\n",
        "the program's file (fd {}) received the library's lines",
        o.get("file_fd")
    );
}

/// More than 4 threads in a UDP check at once use temporary netlink sockets; children forked
/// meanwhile must inherit none of the library's fds (the program itself opens no netlink socket:
/// each child counts the netlink sockets among its fds).
#[test]
fn children_forked_while_threads_check_inherit_no_fd_of_ours() {
    let s = ownfds("life-forkfds");
    let o = s.run(true, &[], &["forkfds", "8", "600"]);
    assert_eq!(o.num("children"), 600, "{}", o.describe());
    assert!(
        o.num("connects") > 1000,
        "the threads did not connect:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("leaky_children"),
        0,
        "children inherited the library's netlink sockets ({} fds):\n{}",
        o.num("leaked_fds"),
        o.describe()
    );
}

/// Loading the library (with CONNECTX_LOG_FILE set, at every level) and its first netlink
/// sockets change no fd number the program gets.
#[test]
fn the_library_moves_none_of_the_programs_fd_numbers() {
    let s = ownfds("life-firstfd");
    let bare = s.run(false, &[], &["firstfd"]);
    let log = s.dir.join("connectx.log").display().to_string();
    for level in ["warn", "debug"] {
        let o = s.run(
            true,
            &[("CONNECTX_LOG", level), ("CONNECTX_LOG_FILE", log.as_str())],
            &["firstfd"],
        );
        assert_eq!(o.num("udp"), 0, "{}", o.describe());
        assert_eq!(
            o.num("first_fd"),
            bare.num("first_fd"),
            "CONNECTX_LOG={level}: the program's first open() got another number with the \
             library loaded:\n{}",
            o.describe()
        );
        assert_eq!(
            o.num("next_fd"),
            bare.num("next_fd"),
            "CONNECTX_LOG={level}: the open() after a UDP connect got another number:\n{}",
            o.describe()
        );
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("connect(fd"),
        "control: at debug the log file gets the lines:\n{text}"
    );
}

/// A pooled netlink socket answers for its own network namespace only. Every port of the range
/// to 127.0.0.2:7 is held in the first namespace; the program then moves to a new one (same
/// range, nothing held): its UDP connects there must succeed as they do without the library,
/// not fail with EAGAIN because the check asked the first namespace. A socket of the new
/// namespace connected from a thread back in the first one connects too (asked in its own
/// namespace, or left to the kernel).
#[test]
fn udp_checks_ask_the_namespace_of_the_programs_socket() {
    let s = ownfds("life-netns");
    for preload in [false, true] {
        let o = common::run(
            common::in_ns(
                &s.ns,
                "40000-40009",
                &if preload {
                    vec![("LD_PRELOAD", library().display().to_string())]
                } else {
                    vec![]
                }
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
                &s.prog,
                &["netns"],
            ),
            Duration::from_secs(60),
        );
        println!("ownfds netns (preload {preload}):\n{}", o.describe());
        o.assert_ok();
        assert_eq!(o.num("held"), 10, "{}", o.describe());
        assert_eq!(
            o.num("early_connected"),
            1,
            "a socket of the new namespace connected from the first (preload {preload}): the \
             kernel's own connect expected (errno {}):\n{}",
            o.num("early_errno"),
            o.describe()
        );
        assert_eq!(
            o.num("new_ns_connected"),
            5,
            "UDP connects in the new namespace (preload {preload}) failed (errno {}):\n{}",
            o.num("new_ns_errno"),
            o.describe()
        );
        assert_eq!(
            o.num("from_first_ns_connected"),
            1,
            "a socket of the new namespace connected from the first one (preload {preload}) \
             failed (errno {}):\n{}",
            o.num("from_first_ns_errno"),
            o.describe()
        );
    }
}

/// A child made by `_Fork()` runs no fork handler: the library must notice it is another process
/// at its first check (pid), connect with netlink sockets of its own, and drop its copies of the
/// parent's (whose port ids belong to the parent).
#[test]
fn a_raw_fork_child_drops_the_parents_netlink_sockets_at_first_use() {
    let s = ownfds("life-rawfork-fds");
    let o = s.run(true, &[], &["rawfork"]);
    assert!(
        o.num("parent_netlink") > 0,
        "control: the parent's UDP connect should have made netlink sockets:\n{}",
        o.describe()
    );
    assert_eq!(o.num("child_connected"), 1, "{}", o.describe());
    assert_eq!(
        o.num("child_kept_parents"),
        0,
        "the _Fork child still holds the parent's netlink sockets after its own check:\n{}",
        o.describe()
    );
}
