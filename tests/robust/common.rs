//! Shared helpers for the robustness tests (faults, security, fuzz, soak): find the library,
//! compile the C helpers in tests/robust/, run commands in fresh network namespaces with a
//! timeout. A missing tool or privilege fails with a message naming it; nothing is skipped.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// target/debug/libconnectx.so, next to the connectx command cargo built for the tests.
/// The library, built first if it is missing or stale (shared with the other tests).
pub fn lib_path() -> PathBuf {
    crate::cxtest::lib()
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (network namespaces, port ranges, setcap); CI runs them as root"
    );
}

fn robust_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/robust")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh world-readable temporary directory (removed on drop unless CONNECTX_KEEP_TMP is set).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "connectx-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CONNECTX_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Compiles tests/robust/`src` into `dir`/`out` with cc -O1 -Wall -Werror -lpthread.
pub fn compile(dir: &TempDir, src: &str, out: &str) -> PathBuf {
    let exe = dir.join(out);
    let o = Command::new("cc")
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&exe)
        .arg(robust_dir().join(src))
        .arg("-lpthread")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cc (gcc must be installed): {e}"));
    assert!(
        o.status.success(),
        "cc {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

/// The namespace runner (tests/robust/nsrun.c).
pub fn nsrun(dir: &TempDir) -> PathBuf {
    compile(dir, "nsrun.c", "nsrun")
}

pub struct Out {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    /// The value of `key=` on stdout (last occurrence), or a panic naming the output.
    pub fn get(&self, key: &str) -> String {
        let pfx = format!("{key}=");
        self.stdout
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(&pfx))
            .next_back()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no {key}= in output:\n{}", self.describe()))
    }
    pub fn num(&self, key: &str) -> i64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number:\n{}", self.describe()))
    }
    pub fn describe(&self) -> String {
        format!(
            "exit {:?} signal {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.signal, self.elapsed, self.stdout, self.stderr
        )
    }
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "command failed:\n{}", self.describe());
        self
    }
    /// stderr lines that come from the library.
    pub fn connectx_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("connectx["))
            .collect()
    }
}

/// Runs `cmd` with a timeout (killed and reported as a failure when it expires).
pub fn run(mut cmd: Command, timeout: Duration) -> Out {
    use std::os::unix::process::ExitStatusExt;
    let timeout = crate::cxtest::scaled(timeout);
    let start = Instant::now();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = so.read_to_end(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = se.read_to_end(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(&t1.join().unwrap()).into_owned();
            let err = String::from_utf8_lossy(&t2.join().unwrap()).into_owned();
            panic!(
                "{cmd:?} did not finish within {timeout:?} (hang)\n--- stdout\n{out}--- stderr\n{err}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        code: status.code(),
        signal: status.signal(),
        stdout: String::from_utf8_lossy(&t1.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t2.join().unwrap()).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// `nsrun -r range [-E env]... -- prog args`: prog in a fresh network namespace. `env` entries
/// are set for prog only (LD_PRELOAD among them when the library is wanted).
pub fn in_ns(
    nsrun: &Path,
    range: &str,
    env: &[(&str, &str)],
    prog: &Path,
    args: &[&str],
) -> Command {
    in_ns_as(nsrun, range, None, env, prog, args)
}

/// `in_ns`, with prog run as `uid` (its gid too, no supplementary groups) when given.
pub fn in_ns_as(
    nsrun: &Path,
    range: &str,
    uid: Option<&str>,
    env: &[(&str, &str)],
    prog: &Path,
    args: &[&str],
) -> Command {
    let mut c = Command::new(nsrun);
    if let Some(u) = uid {
        c.arg("-u").arg(u);
    }
    c.env_remove("LD_PRELOAD");
    for (k, _) in env {
        c.env_remove(k);
    }
    for v in [
        "CONNECTX",
        "CONNECTX_TCP",
        "CONNECTX_UDP",
        "CONNECTX_LOG",
        "CONNECTX_LOG_FILE",
        "CONNECTX_GETSOCKNAME",
    ] {
        c.env_remove(v);
    }
    c.arg("-r").arg(range);
    for (k, v) in env {
        c.arg("-E").arg(format!("{k}={v}"));
    }
    c.arg("--").arg(prog).args(args);
    c
}

pub fn preload(lib: &Path) -> (&'static str, String) {
    ("LD_PRELOAD", lib.display().to_string())
}

/// Number of open fds of this process (for the tests' own hygiene).
pub fn own_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}
