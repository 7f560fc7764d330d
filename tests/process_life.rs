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
