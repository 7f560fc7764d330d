//! Differential suite: the same socket-call scenarios run once on the bare kernel and once with
//! `libconnectx.so` preloaded; every answer the program sees must be identical, except the
//! differences documented in `tests/diff/intended.txt`.
//!
//! The scenario program is `tests/diff/scenarios.c` (it enters its own network namespace with a
//! 10-port range, so it needs root or unprivileged user namespaces). It prints one line per
//! scenario: `name: step=result ...`. The run without the library is the reference.
//!
//! Outputs are kept in `<target>/debug/cxdiff/{without,with}.txt` for inspection.

mod cxtest;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(300);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The library, built first (shared helper: a clean clone or a changed library must not run
/// against a missing or stale build).
fn library() -> PathBuf {
    cxtest::lib()
}

fn build_scenarios() -> PathBuf {
    let out_dir = cxtest::target_dir().join("cxdiff");
    fs::create_dir_all(&out_dir).expect("create output directory");
    let out = out_dir.join("scenarios");
    let src = manifest_dir().join("tests/diff/scenarios.c");
    let status = Command::new("cc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lpthread")
        .status()
        .expect("run cc (gcc must be installed)");
    assert!(status.success(), "compiling {} failed", src.display());
    out
}

/// Runs the scenario program, with or without the library, and returns its stdout.
fn run(bin: &Path, preload: Option<&Path>) -> String {
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Only the library's defaults: no CONNECTX* settings from the caller's environment.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CONNECTX") {
            cmd.env_remove(&k);
        }
    }
    match preload {
        Some(lib) => cmd.env("LD_PRELOAD", lib),
        None => cmd.env_remove("LD_PRELOAD"),
    };
    let mut child = cmd.spawn().expect("start scenario program");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for scenario program") {
            break st;
        }
        if start.elapsed() > cxtest::scaled(TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scenario program timed out after {TIMEOUT:?} (preload: {preload:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_reader.join().unwrap().expect("read stdout");
    let err = err_reader.join().unwrap().unwrap_or_default();
    assert!(
        status.success(),
        "scenario program failed ({status}, preload: {preload:?})\nstderr:\n{err}\nstdout (last lines):\n{}",
        out.lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}

/// `name: rest` lines, in order.
fn parse(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, r)) => (n.trim().to_string(), r.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// `tests/diff/intended.txt`: `scenario-name: reason`; `#` comments and blank lines ignored.
/// A name followed by `if tcp-fixed-port-sharing` differs only on kernels where the library
/// shares fixed TCP ports (Linux 6.5+, src/features.rs); elsewhere it must be identical.
fn intended() -> BTreeMap<String, String> {
    let sharing = cxtest::tcp_fixed_port_sharing();
    let path = manifest_dir().join("tests/diff/intended.txt");
    let text = fs::read_to_string(&path).expect("read tests/diff/intended.txt");
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("intended.txt line {}: expected `name: reason`", i + 1));
        assert!(
            !reason.trim().is_empty(),
            "intended.txt line {}: {} has no reason",
            i + 1,
            name.trim()
        );
        let name = match name.trim().strip_suffix("if tcp-fixed-port-sharing") {
            Some(_) if !sharing => continue,
            Some(n) => n,
            None => name,
        };
        assert!(
            map.insert(name.trim().to_string(), reason.trim().to_string())
                .is_none(),
            "intended.txt line {}: {} listed twice",
            i + 1,
            name.trim()
        );
    }
    map
}

/// A readable diff of two scenario lines: the steps that differ, side by side.
fn step_diff(without: &str, with: &str) -> String {
    let a: Vec<&str> = without.split_whitespace().collect();
    let b: Vec<&str> = with.split_whitespace().collect();
    let mut s = String::new();
    let n = a.len().max(b.len());
    let mut shown = 0;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or("<none>");
        let y = b.get(i).copied().unwrap_or("<none>");
        if x != y {
            s.push_str(&format!(
                "      step {i}: kernel `{x}`  vs  connectx `{y}`\n"
            ));
            shown += 1;
            if shown >= 8 {
                s.push_str("      ...\n");
                break;
            }
        }
    }
    s.push_str(&format!(
        "      kernel:   {without}\n      connectx: {with}\n"
    ));
    s
}

#[test]
fn differential_scenarios() {
    let lib = library();
    let bin = build_scenarios();
    let out_dir = cxtest::target_dir().join("cxdiff");

    let t0 = Instant::now();
    let without = run(&bin, None);
    let t1 = Instant::now();
    let with = run(&bin, Some(&lib));
    let t2 = Instant::now();
    fs::write(out_dir.join("without.txt"), &without).ok();
    fs::write(out_dir.join("with.txt"), &with).ok();

    let reference = parse(&without);
    let preloaded: BTreeMap<String, String> = parse(&with).into_iter().collect();
    let intended = intended();

    let mut problems = Vec::new();
    // The reference run must be clean: a crash or a hang there is a bug in the scenarios.
    for (name, rest) in &reference {
        if rest.starts_with("CRASHED") || rest.starts_with("EXIT") {
            problems.push(format!("reference run (no library): {name}: {rest}"));
        }
    }
    let names: Vec<&String> = reference.iter().map(|(n, _)| n).collect();
    let mut seen = std::collections::BTreeSet::new();
    for n in &names {
        assert!(seen.insert(*n), "scenario name {n} printed twice");
    }
    assert!(
        reference.len() >= 60,
        "only {} scenarios ran (expected at least 60)",
        reference.len()
    );

    let mut identical = 0;
    let mut intended_seen = Vec::new();
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    for (name, kernel) in &reference {
        let Some(shim) = preloaded.get(name) else {
            unexpected.push(format!(
                "  {name}: missing from the run with the library\n      kernel:   {kernel}\n"
            ));
            continue;
        };
        let listed = intended.get(name);
        if kernel == shim {
            identical += 1;
            if listed.is_some() {
                stale.push(format!(
                    "  {name}: listed as an intended difference but identical now:\n      {kernel}\n"
                ));
            }
        } else if let Some(reason) = listed {
            intended_seen.push(format!("  {name} ({reason})\n{}", step_diff(kernel, shim)));
        } else {
            unexpected.push(format!("  {name}:\n{}", step_diff(kernel, shim)));
        }
    }
    for name in preloaded.keys() {
        if !seen.contains(name) {
            unexpected.push(format!(
                "  {name}: only in the run with the library: {}\n",
                preloaded[name]
            ));
        }
    }
    for name in intended.keys() {
        if !seen.contains(name) {
            stale.push(format!(
                "  {name}: listed in intended.txt but no such scenario\n"
            ));
        }
    }

    println!(
        "differential: {} scenarios, {} identical, {} intended differences, {} unexpected differences, {} stale intended entries",
        reference.len(),
        identical,
        intended_seen.len(),
        unexpected.len(),
        stale.len()
    );
    println!(
        "time: without library {:.1}s, with library {:.1}s",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    if !intended_seen.is_empty() {
        println!("intended differences:\n{}", intended_seen.join(""));
    }
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} unexpected difference(s) (not listed in tests/diff/intended.txt):\n{}",
            unexpected.len(),
            unexpected.join("")
        ));
    }
    if !stale.is_empty() {
        problems.push(format!(
            "{} entr(y/ies) in tests/diff/intended.txt no longer differ (remove them):\n{}",
            stale.len(),
            stale.join("")
        ));
    }
    assert!(
        problems.is_empty(),
        "differential suite failed ({} scenarios, {} identical):\n{}\n(full outputs: {})",
        reference.len(),
        identical,
        problems.join("\n"),
        out_dir.display()
    );
}
