//! The `connectx` command itself: run's environment, exit statuses and
//! errors, help, and the demo.

mod cxtest;
use cxtest::{cmd, cx, lib};

#[test]
fn run_prepends_library_to_ld_preload_once() {
    let lib = lib();
    let l = lib.to_str().unwrap();
    let o = cmd(&cx(), &["run", "--", "sh", "-c", "echo $LD_PRELOAD"], &[]);
    assert_eq!(o.stdout.trim(), l, "{o}");
    let o = cmd(
        &cx(),
        &["run", "--", "sh", "-c", "echo $LD_PRELOAD"],
        &[("LD_PRELOAD", "/nonexistent/other.so")],
    );
    assert_eq!(
        o.stdout.lines().last().unwrap_or(""),
        format!("{l}:/nonexistent/other.so"),
        "{o}"
    );
    let already = format!("/nonexistent/other.so {l}");
    let o = cmd(
        &cx(),
        &["run", "--", "sh", "-c", "echo $LD_PRELOAD"],
        &[("LD_PRELOAD", &already)],
    );
    assert_eq!(
        o.stdout.lines().last().unwrap_or(""),
        already,
        "library added twice:\n{o}"
    );
}

#[test]
fn run_maps_options_to_variables() {
    let o = cmd(
        &cx(),
        &[
            "run",
            "--tcp",
            "off",
            "--udp",
            "on",
            "--log",
            "debug",
            "--log-file",
            "/dev/null",
            "--getsockname",
            "port0",
            "--bind-busy",
            "kernel",
            "--",
            "env",
        ],
        &[],
    );
    for v in [
        "CONNECTX_TCP=0",
        "CONNECTX_UDP=1",
        "CONNECTX_LOG=debug",
        "CONNECTX_LOG_FILE=/dev/null",
        "CONNECTX_GETSOCKNAME=port0",
        "CONNECTX_BIND_BUSY=kernel",
    ] {
        assert!(o.stdout.lines().any(|l| l == v), "missing {v}:\n{o}");
    }
}

#[test]
fn run_returns_the_commands_exit_status() {
    let o = cmd(&cx(), &["run", "--", "sh", "-c", "exit 7"], &[]);
    assert_eq!(o.code, Some(7), "{o}");
    // Killed by a signal: the status is the command's own (a shell shows 128+15).
    let o = cmd(&cx(), &["run", "--", "sh", "-c", "kill -TERM $$"], &[]);
    assert_eq!(o.code, None, "expected death by signal:\n{o}");
    let o = cmd(
        Path::new("sh"),
        &[
            "-c",
            &format!(
                "{} run -- sh -c 'kill -TERM $$'; echo status=$?",
                cx().display()
            ),
        ],
        &[],
    );
    assert!(o.stdout.contains("status=143"), "{o}");
}

#[test]
fn run_reports_a_command_that_cannot_run() {
    let o = cmd(&cx(), &["run", "--", "/nonexistent/program"], &[]);
    assert_eq!(o.code, Some(127), "{o}");
    assert_eq!(o.stderr.lines().count(), 1, "one line expected:\n{o}");
    assert!(o.stderr.contains("cannot run /nonexistent/program"), "{o}");
}

#[test]
fn run_reports_a_missing_library() {
    let o = cmd(
        &cx(),
        &["run", "--lib", "/nonexistent/libconnectx.so", "--", "true"],
        &[],
    );
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.stderr.contains("/nonexistent/libconnectx.so"), "{o}");
    let o = cmd(
        &cx(),
        &["run", "--", "true"],
        &[("CONNECTX_LIB", "/nonexistent/lib.so")],
    );
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.stderr.contains("CONNECTX_LIB"), "{o}");
    // A copy of the binary with no library next to it (or in ../lib).
    let dir = std::env::temp_dir().join(format!("connectx-nolib-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("connectx");
    std::fs::copy(cx(), &copy).unwrap();
    let o = cmd(&copy, &["run", "--", "true"], &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.stderr.contains("cannot find libconnectx.so"), "{o}");
}

#[test]
fn bad_command_lines_get_one_line_and_status_2() {
    for args in [
        &["run", "--bogus", "--", "true"][..],
        &["run", "--log", "loud", "--", "true"],
        &["run", "--tcp", "maybe", "--", "true"],
        &["run"],
        &["frobnicate"],
        &["_client", "--proto", "tcp", "--dst", "not-an-address"],
        &["_netns", "--range", "9-1", "--", "true"],
    ] {
        let o = cmd(&cx(), args, &[]);
        assert_eq!(o.code, Some(2), "{args:?}:\n{o}");
        assert_eq!(
            o.stderr.lines().count(),
            1,
            "{args:?}: one line expected:\n{o}"
        );
        assert!(!o.stderr.contains("panicked"), "{args:?}:\n{o}");
    }
}

#[test]
fn help_shows_usage() {
    for args in [&["--help"][..], &["help"]] {
        let o = cmd(&cx(), args, &[]);
        assert_eq!(o.code, Some(0), "{o}");
        assert!(o.stdout.contains("connectx run [options] -- CMD"), "{o}");
        assert!(o.stdout.contains("connectx demo"), "{o}");
        assert!(o.stdout.contains("_netns"), "{o}");
    }
    let o = cmd(&cx(), &[], &[]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.stderr.contains("usage:"), "{o}");
}

#[test]
fn demo_shows_the_failure_and_the_fix() {
    let o = cmd(&cx(), &["demo"], &[]);
    for row in [
        "TCP bind(127.0.0.1,0) + connect",
        "UDP connect",
        "UDP bind(127.0.0.1,0) + connect",
    ] {
        assert!(o.stdout.contains(row), "row `{row}` missing:\n{o}");
    }
    let row = o
        .stdout
        .lines()
        .find(|l| l.starts_with("TCP bind(127.0.0.1,0)"))
        .unwrap_or("");
    assert!(
        row.contains("| 10 (then bind EADDRINUSE)"),
        "without-library figure:\n{o}"
    );
    assert_eq!(
        o.code,
        Some(0),
        "demo reports a recipe below its expected figure:\n{o}"
    );
}

use std::path::Path;
