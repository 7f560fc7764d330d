//! Security (issue 5, item 4):
//! - a secure-execution program (file capabilities, setuid: AT_SECURE) under an LD_PRELOAD set by
//!   its caller: connectx does nothing and reads no variable;
//! - no option connectx sets lets another process take over a port a program would have held
//!   exclusively (TCP servers bound and listening, UDP servers, a restarting server, a UDP
//!   server inside the ephemeral range, a fixed-port UDP socket after a disconnect);
//! - the log file is never followed through a symlink.
//!
//! Every program runs in a fresh network namespace (tests/robust/nsrun.c).

#[path = "robust/common.rs"]
mod common;
mod cxtest;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const R10: &str = "40000-40009";
const T: Duration = Duration::from_secs(60);
const NOBODY: &str = "65534";

/// A copy of the library in the loader's trusted directory with the set-user-ID bit, which is
/// what glibc requires to preload a library (by bare name) into a secure-execution program.
/// Removed on drop.
struct TrustedCopy(PathBuf);

impl TrustedCopy {
    fn new(lib: &Path) -> TrustedCopy {
        let multiarch = Command::new("cc")
            .arg("-print-multiarch")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let mut candidates = vec![];
        if !multiarch.is_empty() {
            candidates.push(format!("/usr/lib/{multiarch}"));
            candidates.push(format!("/lib/{multiarch}"));
        }
        candidates.extend(["/usr/lib64".into(), "/lib64".into(), "/usr/lib".into()]);
        let dir = candidates
            .into_iter()
            .map(PathBuf::from)
            .find(|d| d.is_dir())
            .expect("no standard library directory found for a trusted preload copy");
        let p = dir.join(format!("libconnectx-robust-{}.so", std::process::id()));
        std::fs::copy(lib, &p).unwrap_or_else(|e| panic!("copy library to {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4755)).unwrap();
        TrustedCopy(p)
    }
    fn bare_name(&self) -> String {
        self.0.file_name().unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for TrustedCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn secure_execution_program_is_left_alone() {
    require_root();
    let lib = lib_path();
    let dir = TempDir::new("security-secure");
    let ns = nsrun(&dir);
    let plain = compile(&dir, "secure.c", "secure-plain");
    let cap = dir.join("secure-cap");
    let suid = dir.join("secure-suid");
    std::fs::copy(&plain, &cap).unwrap();
    std::fs::copy(&plain, &suid).unwrap();
    let o = Command::new("setcap")
        .arg("cap_net_bind_service+ep")
        .arg(&cap)
        .output()
        .unwrap_or_else(|e| panic!("setcap is needed (apt-get install libcap2-bin): {e}"));
    assert!(
        o.status.success(),
        "setcap failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // setuid to another user (uid 1), run by nobody: AT_SECURE.
    // SAFETY: valid NUL-terminated path.
    let cpath = std::ffi::CString::new(suid.display().to_string()).unwrap();
    assert_eq!(unsafe { libc::chown(cpath.as_ptr(), 1, 1) }, 0, "chown");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let logs = dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();

    let trusted = TrustedCopy::new(&lib);
    let bare = trusted.bare_name();
    let full = lib.display().to_string();

    let go = |prog: &Path, preload: &str, tag: &str| -> (Out, PathBuf) {
        let log = logs.join(format!("{tag}.log"));
        let log_s = log.display().to_string();
        let env = [
            ("LD_PRELOAD", preload),
            ("CONNECTX_LOG", "debug"),
            ("CONNECTX_LOG_FILE", log_s.as_str()),
            ("CONNECTX_UDP", "not-a-switch"),
            ("CONNECTX_GETSOCKNAME", "nonsense"),
        ];
        let o = run(in_ns_as(&ns, R10, Some(NOBODY), &env, prog, &[]), T);
        o.assert_ok();
        (o, log)
    };

    // Control: the same program without privileges is managed (R x 3 = 30), logs to the file
    // and warns about the bad values; so the checks below would see the library at work.
    let (o, log) = go(&plain, &bare, "control");
    assert_eq!(o.get("at_secure"), "0", "{}", o.describe());
    assert_eq!(o.get("loaded"), "1", "{}", o.describe());
    assert_eq!(
        o.num("udp"),
        30,
        "control should get R x D:\n{}",
        o.describe()
    );
    assert_eq!(o.num("tcp"), 30, "{}", o.describe());
    assert!(
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("debug")),
        "control: the log file should have debug lines"
    );
    assert_eq!(o.connectx_lines().len(), 2, "{}", o.describe());

    let mut report = vec![];
    for (prog, kind) in [(&cap, "file capability"), (&suid, "setuid")] {
        // Preloaded by bare name from the trusted directory: the loader loads it into the
        // secure program, and connectx must stay inert.
        let (o, log) = go(prog, &bare, &format!("{kind}-trusted"));
        assert_eq!(
            o.get("at_secure"),
            "1",
            "{kind}: expected AT_SECURE:\n{}",
            o.describe()
        );
        assert_eq!(
            o.get("loaded"),
            "1",
            "{kind}: the loader should preload a set-user-ID library from {} by bare name:\n{}",
            trusted.0.display(),
            o.describe()
        );
        assert_eq!(
            (
                o.num("udp"),
                o.num("udp_errno"),
                o.num("tcp"),
                o.num("tcp_errno")
            ),
            (10, libc::EADDRINUSE as i64, 10, libc::EADDRINUSE as i64),
            "{kind}: connectx must do nothing in a secure program (kernel: R = 10, then bind \
             EADDRINUSE):\n{}",
            o.describe()
        );
        assert!(
            !log.exists(),
            "{kind}: connectx must not read CONNECTX_LOG_FILE in a secure program, but {} exists",
            log.display()
        );
        assert!(
            o.stderr.is_empty(),
            "{kind}: nothing may be written (no variable read):\n{}",
            o.stderr
        );
        report.push(format!("{kind}: loaded by bare name, inert"));
        // By full path: the loader refuses it (PITFALLS 12); the program runs as without it.
        let (o, log) = go(prog, &full, &format!("{kind}-path"));
        assert_eq!(o.get("at_secure"), "1");
        assert_eq!(
            o.get("loaded"),
            "0",
            "{kind}: loader should ignore a path preload:\n{}",
            o.describe()
        );
        assert_eq!((o.num("udp"), o.num("tcp")), (10, 10), "{}", o.describe());
        assert!(!log.exists() && o.stderr.is_empty(), "{}", o.describe());
        report.push(format!("{kind}: path preload ignored by the loader"));
    }
    eprintln!("AT_SECURE: {}", report.join("; "));
}

/// Runs `exclusivity LIB scenario` with the holder without and with the library; every line
/// (intruder with and without the library) must equal the kernel-only line of its case, except
/// where `allowed` accepts the library's answer.
fn exclusivity(scenario: &str, allowed: impl Fn(&str, &str) -> bool) {
    require_root();
    let lib = lib_path();
    let lib_s = lib.display().to_string();
    let dir = TempDir::new("security-excl");
    let ns = nsrun(&dir);
    let prog = compile(&dir, "exclusivity.c", "exclusivity");
    let parse = |o: &Out| -> Vec<(String, String, String)> {
        o.assert_ok();
        assert!(
            !o.stdout.contains("harness_error"),
            "harness error:\n{}",
            o.describe()
        );
        o.stdout
            .lines()
            .filter_map(|l| {
                let mut w = l.splitn(3, ' ');
                let case = w.next()?.strip_prefix("case=")?.to_string();
                let who = w.next()?.strip_prefix("intruder=")?.to_string();
                Some((case, who, w.next().unwrap_or("").to_string()))
            })
            .collect()
    };
    let kernel_run = run(in_ns(&ns, R10, &[], &prog, &[&lib_s, scenario]), T);
    let kernel = parse(&kernel_run);
    assert!(!kernel.is_empty(), "{}", kernel_run.describe());
    let baseline: BTreeMap<String, String> = kernel
        .iter()
        .filter(|(_, who, _)| who == "nolib")
        .map(|(c, _, r)| (c.clone(), r.clone()))
        .collect();
    let lib_run = run(
        in_ns(
            &ns,
            R10,
            &[("LD_PRELOAD", &lib_s)],
            &prog,
            &[&lib_s, scenario],
        ),
        T,
    );
    let with_lib = parse(&lib_run);
    let mut bad = vec![];
    let mut n = 0;
    for (holder, lines) in [("nolib", &kernel), ("lib", &with_lib)] {
        for (case, who, result) in lines {
            n += 1;
            let want = &baseline[case];
            if result != want && !allowed(case, result) {
                bad.push(format!(
                    "{case}: holder {holder}, intruder {who}: {result}\n    kernel alone: {want}"
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {n} cases differ from the kernel alone (a port held exclusively was taken over):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn tcp_servers_bound_and_listening_keep_their_ports() {
    exclusivity("tcp", |_, _| false);
}

#[test]
fn udp_servers_keep_their_ports_and_their_datagrams() {
    // Where holder and intruder both set SO_REUSEADDR themselves the kernel lets them share
    // (and overshadow); connectx may then refuse the intruder's connect (EADDRNOTAVAIL,
    // README "Intended differences"), which keeps the server's datagrams.
    exclusivity("udp", |case, result| {
        case.contains("server_reuse=1/intruder_reuse=1")
            && result == "bind=0 connect=EADDRNOTAVAIL server_got=1"
    });
}

/// A server restarting while TIME_WAIT entries of its previous life hold its port: it binds
/// with SO_REUSEADDR (as servers do), and between its bind and its listen another program
/// without SO_REUSEADDR must get EADDRINUSE, and the server's listen must succeed.
#[test]
fn restarting_tcp_server_keeps_its_port_between_bind_and_listen() {
    exclusivity("tcp-restart", |_, _| false);
}

/// A UDP server on a port inside the ephemeral range: the kernel never gives that port to a
/// client's connect(); connectx must not either (the client would then receive the server's
/// datagrams from its destination). A server WITHOUT SO_REUSEADDR is protected by the lock; one
/// that set SO_REUSEADDR itself opted into sharing its port with any other SO_REUSEADDR socket,
/// and the UDP lock only protects sockets that play by it (SPEC "Cooperation"; README "Limits"):
/// that case is the documented exception.
#[test]
fn udp_server_in_the_ephemeral_range_is_not_overshadowed() {
    exclusivity("udp-inrange", |case, _| case.ends_with("server_reuse=1"));
}

/// A UDP socket the program bound to a fixed port connects and disconnects (AF_UNSPEC): the
/// kernel keeps the port exclusively its own; no other connect may land on it.
#[test]
fn udp_fixed_port_stays_exclusive_after_a_disconnect() {
    exclusivity("udp-disconnect", |_, _| false);
}

#[test]
fn log_file_is_never_followed_through_a_symlink() {
    require_root();
    let lib = lib_path().display().to_string();
    let dir = TempDir::new("security-symlink");
    let ns = nsrun(&dir);
    let client = compile(&dir, "client.c", "client");
    let target = dir.join("target.txt");
    std::fs::write(&target, "precious\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::metadata(&target).unwrap();
    let link = dir.join("link.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = dir.join("dangling.log");
    let absent = dir.join("absent.txt");
    std::os::unix::fs::symlink(&absent, &dangling).unwrap();

    for (l, what) in [(&link, "symlink"), (&dangling, "dangling symlink")] {
        let l_s = l.display().to_string();
        for level in ["warn", "debug"] {
            let o = run(
                in_ns(
                    &ns,
                    R10,
                    &[
                        ("LD_PRELOAD", &lib),
                        ("CONNECTX_LOG_FILE", &l_s),
                        ("CONNECTX_LOG", level),
                    ],
                    &client,
                    &["udp", "3", "40", "0"],
                ),
                T,
            );
            o.assert_ok();
            assert_eq!(o.num("connected"), 30, "{}", o.describe());
            let lines = o.connectx_lines();
            let about: Vec<_> = lines
                .iter()
                .filter(|x| x.contains("CONNECTX_LOG_FILE"))
                .collect();
            assert_eq!(
                about.len(),
                1,
                "{what}: one line on stderr about the log file:\n{}",
                o.describe()
            );
            assert!(about[0].contains(&l_s) && about[0].contains("symbolic link"));
            if level == "warn" {
                assert_eq!(lines.len(), 1, "{}", o.describe());
            } else {
                assert!(lines.len() > 1, "debug lines go to stderr instead");
            }
        }
    }
    let after = std::fs::metadata(&target).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert_eq!(after.len(), before.len());
    assert_eq!(
        after.permissions().mode() & 0o7777,
        0o644,
        "target's mode changed"
    );
    assert!(
        !absent.exists(),
        "a dangling symlink's target must not be created"
    );
    // A regular log file is created 0600 (README).
    let real = dir.join("real.log");
    let real_s = real.display().to_string();
    let o = run(
        in_ns(
            &ns,
            R10,
            &[
                ("LD_PRELOAD", &lib),
                ("CONNECTX_LOG_FILE", &real_s),
                ("CONNECTX_LOG", "debug"),
            ],
            &client,
            &["gsn"],
        ),
        T,
    );
    o.assert_ok();
    assert!(o.stderr.is_empty(), "{}", o.describe());
    let m = std::fs::metadata(&real).expect("log file created");
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
}

/// CONNECTX_LOG_FILE through a directory symlink: refused (O_NOFOLLOW alone covers only the last
/// component), one warning on stderr, nothing created behind the link.
#[test]
fn log_file_is_never_followed_through_a_directory_symlink() {
    require_root();
    let lib = lib_path().display().to_string();
    let dir = TempDir::new("security-dirsymlink");
    let ns = nsrun(&dir);
    let client = compile(&dir, "client.c", "client");
    let real = dir.join("real-dir");
    std::fs::create_dir(&real).unwrap();
    let link = dir.join("link-dir");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // Through the symlink in the middle, and with the symlink further up the path.
    std::fs::create_dir(real.join("sub")).unwrap();
    for via in [link.join("x.log"), link.join("sub/y.log")] {
        let via_s = via.display().to_string();
        for level in ["warn", "debug"] {
            let o = run(
                in_ns(
                    &ns,
                    R10,
                    &[
                        ("LD_PRELOAD", &lib),
                        ("CONNECTX_LOG_FILE", &via_s),
                        ("CONNECTX_LOG", level),
                    ],
                    &client,
                    &["udp", "3", "40", "0"],
                ),
                T,
            );
            o.assert_ok();
            assert_eq!(o.num("connected"), 30, "{}", o.describe());
            let about: Vec<_> = o
                .connectx_lines()
                .into_iter()
                .filter(|x| x.contains("CONNECTX_LOG_FILE"))
                .collect();
            assert_eq!(
                about.len(),
                1,
                "{via_s}: one line on stderr about the log file:\n{}",
                o.describe()
            );
            assert!(about[0].contains(&via_s) && about[0].contains("symbolic link"));
        }
    }
    let made: Vec<_> = walk(&real);
    assert!(
        made.iter().all(|p| p.ends_with("sub")),
        "files were created through the directory symlink: {made:?}"
    );
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}
