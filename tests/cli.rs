//! The `connectx` command itself: run's environment, exit statuses and
//! errors, help, and the demo.

mod cxtest;
use cxtest::{cmd, cx, lib, need};
use std::os::unix::fs::PermissionsExt;

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
fn run_returns_126_for_a_program_that_cannot_be_executed() {
    let dir = tmpdir("noexec");
    let f = dir.join("script");
    std::fs::write(&f, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    for prog in [f.to_str().unwrap(), "/etc"] {
        let o = cmd(&cx(), &["run", "--", prog], &[]);
        assert_eq!(o.code, Some(126), "{prog}: {o}");
        assert!(o.stderr.contains(&format!("cannot run {prog}")), "{o}");
    }
    let o = cmd(&cx(), &["run", "--", "no-such-program-anywhere"], &[]);
    assert_eq!(o.code, Some(127), "{o}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_makes_the_log_file_absolute() {
    let dir = tmpdir("logrel");
    let o = cmd(
        Path::new("sh"),
        &[
            "-c",
            &format!(
                "cd {} && {} run --log-file rel.log -- sh -c 'echo $CONNECTX_LOG_FILE'",
                dir.display(),
                cx().display()
            ),
        ],
        &[],
    );
    let canon = std::fs::canonicalize(&dir).unwrap();
    let got = o.stdout.trim();
    assert!(
        got == dir.join("rel.log").to_str().unwrap()
            || got == canon.join("rel.log").to_str().unwrap(),
        "expected {}/rel.log:\n{o}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_refuses_a_library_that_is_not_a_loadable_elf_library() {
    // Text, an executable (not a shared library) and a 32-bit ELF header.
    let dir = tmpdir("badlib");
    let elf32 = dir.join("elf32.so");
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 1; // ELFCLASS32
    h[5] = 1; // little endian
    h[16] = 3; // ET_DYN
    h[18] = 3; // EM_386
    std::fs::write(&elf32, &h).unwrap();
    let exe = need("true", "coreutils");
    for (lib, why) in [
        (Path::new("/etc/passwd"), "not an ELF file"),
        (exe.as_path(), "not a shared library"),
        (elf32.as_path(), "32-bit library"),
    ] {
        let o = cmd(
            &cx(),
            &["run", "--lib", lib.to_str().unwrap(), "--", "true"],
            &[],
        );
        assert_eq!(o.code, Some(2), "{}: {o}", lib.display());
        assert!(
            o.stderr.contains(why),
            "{}: expected `{why}`:\n{o}",
            lib.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_warns_when_the_program_cannot_be_preloaded() {
    need("cc", "gcc");
    let dir = tmpdir("static");
    let src = dir.join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let stat = dir.join("static-prog");
    let o = cmd(
        Path::new("cc"),
        &[
            "-static",
            "-o",
            stat.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "cc -static (needs libc6-dev):\n{o}");
    // --no-supervise: a static program is otherwise supervised (tests/supervise.rs).
    let o = cmd(
        &cx(),
        &["run", "--no-supervise", "--", stat.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        o.stderr.contains("is statically linked") && o.stderr.contains("will not preload"),
        "{o}"
    );
    let o = cmd(
        &cx(),
        &[
            "run",
            "--no-supervise",
            "--quiet",
            "--",
            stat.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.stderr.is_empty(), "--quiet: {o}");
    // setuid to another user: the kernel runs it in secure-execution mode.
    let suid = dir.join("suid-true");
    std::fs::copy(need("true", "coreutils"), &suid).unwrap();
    std::os::unix::fs::chown(&suid, Some(65534), None).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let o = cmd(&cx(), &["run", "--", suid.to_str().unwrap()], &[]);
    assert!(o.stderr.contains("is setuid (owner uid 65534)"), "{o}");
    // A dynamically linked program and a script: no warning.
    let o = cmd(&cx(), &["run", "--", "sh", "-c", "true"], &[]);
    assert!(o.stderr.is_empty(), "{o}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("connectx-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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
fn help_shows_usage_without_the_test_tools() {
    for args in [&["--help"][..], &["help"], &["-h"]] {
        let o = cmd(&cx(), args, &[]);
        assert_eq!(o.code, Some(0), "{o}");
        for sub in ["run", "demo", "status", "stats"] {
            assert!(
                o.stdout.lines().any(|l| l.trim_start().starts_with(sub)),
                "`{sub}` missing from the help:\n{o}"
            );
        }
        assert!(
            !o.stdout.contains("_netns"),
            "test tools in the main help:\n{o}"
        );
    }
    let o = cmd(&cx(), &["run", "--help"], &[]);
    assert!(
        o.stdout.contains("Usage: connectx run [OPTIONS] <CMD>..."),
        "{o}"
    );
    assert!(o.stdout.contains("--log-file <PATH>"), "{o}");
    // The test tools are still there, listed on their own.
    let o = cmd(&cx(), &["_tools"], &[]);
    assert!(o.stdout.contains("connectx _netns"), "{o}");
    let o = cmd(&cx(), &[], &[]);
    assert_eq!(o.code, Some(2), "{o}");
    assert!(o.stderr.contains("Usage:"), "{o}");
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
