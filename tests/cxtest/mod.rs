//! Shared helpers for the integration tests. Every scenario runs as a shell
//! script inside its own network namespace made by `connectx _netns` (which
//! also gives it its own PID namespace: whatever the script leaves running is
//! killed when it ends), so tests can run in parallel.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Three echo destinations for R×D figures.
pub const DSTS: &str = "127.0.0.2:7,127.0.0.3:7,127.0.0.4:7";
pub const RANGE: &str = "40000-40009";

/// The connectx binary (built with the library: see `lib`).
pub fn cx() -> PathBuf {
    lib();
    let p = bin();
    assert!(
        p.is_file(),
        "connectx not found at {}: it must be built next to the library (`cargo build`)",
        p.display()
    );
    p
}

/// The build directory of the `connectx` command (target/<profile>), where the library lands.
pub fn target_dir() -> PathBuf {
    bin()
        .parent()
        .expect("connectx binary has a parent directory")
        .to_path_buf()
}

/// target/<profile>/connectx. The command is another package of the workspace (cli/), so
/// cargo gives these tests no CARGO_BIN_EXE_connectx: it sits in the directory above this test
/// executable (target/<profile>/deps/), where `build_lib` builds it.
fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .join("connectx")
}

/// The library next to the binary, built first.
///
/// `cargo test` builds neither the cdylib nor the command of the other package for these
/// tests, so a clean clone would have neither and a changed one stale ones: build both (a no-op
/// when up to date) with the same cargo and profile, once per test process. Missing afterwards
/// is a failure, never a skip.
pub fn lib() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(build_lib);
    if let Err(e) = built {
        panic!("{e}");
    }
    let p = bin().with_file_name("libconnectx.so");
    assert!(
        p.is_file(),
        "libconnectx.so not found at {}: the library must be built next to the connectx binary (`cargo build`)",
        p.display()
    );
    p
}

fn build_lib() -> Result<(), String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut c = Command::new(cargo);
    c.args([
        "build",
        "--quiet",
        "-p",
        "connectx",
        "--lib",
        "-p",
        "connectx-cli",
        "--bin",
        "connectx",
    ])
    .current_dir(repo());
    // Same profile as the binary under test: target/<profile>/connectx.
    match bin()
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some("debug") | None => {}
        Some("release") => {
            c.arg("--release");
        }
        Some(other) => {
            c.args(["--profile", other]);
        }
    }
    let out = run_bounded(c, Duration::from_secs(600));
    if out.code == Some(0) {
        Ok(())
    } else {
        Err(format!(
            "building libconnectx.so and connectx (`cargo build`) failed:\n{out}"
        ))
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when a tool the test needs is missing.
pub fn need(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{tool}` is not installed: apt-get install {package}"))
}

pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// The first line that starts with `tag ` (without the tag).
    pub fn line(&self, tag: &str) -> String {
        let p = format!("{tag} ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&p))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no line tagged `{tag}` in the output:\n{self}"))
    }

    /// key=value from the line tagged `tag`.
    pub fn get(&self, tag: &str, key: &str) -> String {
        let line = self.line(tag);
        field(&line, key).unwrap_or_else(|| panic!("no {key}= in line `{tag} {line}`:\n{self}"))
    }

    /// Asserts each key=value of the line tagged `tag`.
    pub fn expect(&self, what: &str, tag: &str, want: &[(&str, &str)]) {
        let line = self.line(tag);
        for (k, v) in want {
            let got = field(&line, k);
            assert!(
                got.as_deref() == Some(*v),
                "{what}: expected {k}={v}, got {k}={}\n  line: {tag} {line}\n{self}",
                got.as_deref().unwrap_or("<missing>")
            );
        }
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// Shell functions every scenario script can use:
///   tag T CMD...   run CMD, prefix its (one-line) output with `T `
///   $CX            the connectx binary, $LIB the library
///   $RUN           empty without the library, `env LD_PRELOAD=$LIB` with it
const PRELUDE: &str = r#"
set -u
tag() { t=$1; shift; o=$("$@" 2>&1); printf '%s %s\n' "$t" "$(printf '%s' "$o" | tr '\n' ' ')"; }
"#;

/// Runs `script` with sh in a fresh namespace (port range `range`, optional
/// reserved ports), with or without the library in $RUN. Bounded.
pub fn netns(range: &str, reserved: Option<&str>, with_lib: bool, script: &str) -> Out {
    let lib = lib();
    let mut c = Command::new(cx());
    c.arg("_netns").args(["--range", range]);
    if let Some(r) = reserved {
        c.args(["--reserved", r]);
    }
    let run = if with_lib {
        format!("env LD_PRELOAD={}", lib.display())
    } else {
        String::new()
    };
    c.args(["--", "sh", "-c", &format!("{PRELUDE}\n{script}")])
        .env("CX", cx())
        .env("LIB", &lib)
        .env("RUN", run)
        .env("REPO", repo());
    scrub(&mut c);
    let out = run_bounded(c, Duration::from_secs(120));
    if out.code == Some(3) {
        panic!(
            "cannot create a network namespace (tests need root or unprivileged user namespaces):\n{out}"
        );
    }
    out
}

/// Both halves: (without the library, with the library), each in its own namespace.
pub fn both(range: &str, reserved: Option<&str>, script: &str) -> (Out, Out) {
    (
        netns(range, reserved, false, script),
        netns(range, reserved, true, script),
    )
}

/// Hermetic: the caller's LD_PRELOAD and CONNECTX* settings must not leak in.
fn scrub(c: &mut Command) {
    c.env_remove("LD_PRELOAD");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CONNECTX") {
            c.env_remove(k);
        }
    }
}

/// A time limit scaled by CONNECTX_TEST_TIME_SCALE (an integer, default 1): the kernel lane
/// (scripts/kernel-lane.sh) runs the tests under software emulation, several times slower.
pub fn scaled(limit: Duration) -> Duration {
    let k = std::env::var("CONNECTX_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    limit * k
}

pub fn run_bounded(mut c: Command, limit: Duration) -> Out {
    let limit = scaled(limit);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", c.get_program()));
    let mut so = child.stdout.take().expect("stdout pipe");
    let mut se = child.stderr.take().expect("stderr pipe");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("wait") {
            Some(st) => break Some(st),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
        }
    };
    let out = Out {
        code: status.and_then(|s| s.code()),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    };
    assert!(
        !timed_out,
        "timed out after {limit:?}: {:?}\n{out}",
        c.get_program()
    );
    out
}

/// Runs a command (no namespace) with a bound.
pub fn cmd(prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(prog);
    c.args(args);
    scrub(&mut c);
    for (k, v) in env {
        c.env(k, v);
    }
    run_bounded(c, Duration::from_secs(120))
}

/// The running kernel's (major, minor), from /proc/sys/kernel/osrelease.
pub fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("read osrelease");
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    let mut next = || it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (next(), next())
}

/// Whether SOCK_DIAG dumps TCP sockets that are only bound (Linux 6.5+), without which the
/// library shares no fixed TCP port (src/features.rs). The tests' own oracle, the kernel
/// release, independent of the library's probe (the kernel lane runs Debian's 6.1 and 6.12).
pub fn tcp_fixed_port_sharing() -> bool {
    kernel_version() >= (6, 5)
}
