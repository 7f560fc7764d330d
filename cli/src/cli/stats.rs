//! `connectx stats [PID]`: the counters the library keeps in each process (src/stats.rs has
//! the file layout), read from the same directories the library writes to. Files of processes
//! that ended without removing theirs (killed) are recognised by the start time in their
//! header and removed where we may.

use super::{Res, fail, json};
use std::path::{Path, PathBuf};

/// What connectx did in running processes (counters kept by the library)
///
/// Counters per process: connections let through that the kernel alone would have refused
/// (tcp.shared_fixed_port, tcp.per_tuple_connect, udp.lock_connect, ...), lost races, EAGAIN,
/// exhaustion, and fallbacks to the kernel's behaviour by reason. Each process writes
/// <dir>/<pid>.stats, dir being $CONNECTX_STATS_DIR, else $XDG_RUNTIME_DIR/connectx,
/// else /run/connectx (root), else /tmp/connectx-<uid>.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// One process (default: every live process with a counters file)
    pid: Option<u32>,
    /// JSON instead of text
    #[arg(long)]
    json: bool,
    /// Directory to read (default: the library's, see above)
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Remove the files of processes that ended without removing theirs (killed)
    #[arg(long)]
    clean: bool,
}

pub struct Proc {
    pub pid: u32,
    pub program: String,
    pub counters: Vec<(String, u64)>,
}

/// The directories the library may write to, for this user (src/stats.rs `configure`).
pub fn dirs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("CONNECTX_STATS_DIR").filter(|d| !d.is_empty()) {
        v.push(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        v.push(Path::new(&d).join("connectx"));
    }
    v.push(PathBuf::from("/run/connectx"));
    // SAFETY: no preconditions.
    v.push(PathBuf::from(format!("/tmp/connectx-{}", unsafe {
        libc::geteuid()
    })));
    v.dedup();
    v
}

/// Start time (field 22) of a live process, None if it is gone.
fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    std::str::from_utf8(&s[close + 1..])
        .ok()?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Parses one counters file; None if it is not one (or is incomplete).
pub fn parse(b: &[u8]) -> Option<(u32, u64, Proc)> {
    if b.get(..8)? != b"CNXSTAT1" || u32_at(b, 8)? != 1 {
        return None;
    }
    let pid = u32_at(b, 12)?;
    let start = u64_at(b, 16)?;
    let comm = b.get(24..40)?;
    let program = String::from_utf8_lossy(&comm[..comm.iter().position(|&c| c == 0).unwrap_or(16)])
        .into_owned();
    let n = u32_at(b, 40)? as usize;
    let mut at = u32_at(b, 44)? as usize;
    let mut counters = Vec::with_capacity(n);
    for i in 0..n.min(256) {
        let rest = b.get(at..)?;
        let len = rest.iter().position(|&c| c == 0)?;
        let name = String::from_utf8_lossy(&rest[..len]).into_owned();
        at += len + 1;
        counters.push((name, u64_at(b, 64 + 8 * i)?));
    }
    Some((
        pid,
        start,
        Proc {
            pid,
            program,
            counters,
        },
    ))
}

/// Every live process with a counters file, sorted by pid; with `clean`, stale files (their
/// process is gone, or the pid is another process now) are removed. Only then: a reader whose
/// /proc is not the writer's would take live files for stale ones.
pub fn collect(dirs: &[PathBuf], clean: bool) -> Vec<Proc> {
    let mut out: Vec<Proc> = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".stats") {
                continue;
            }
            let Ok(b) = std::fs::read(e.path()) else {
                continue;
            };
            let Some((pid, start, p)) = parse(&b) else {
                continue;
            };
            if start_time(pid) != Some(start) {
                // The process ended without removing its file (killed), or the pid is reused.
                if clean {
                    let _ = std::fs::remove_file(e.path());
                }
                continue;
            }
            if !out.iter().any(|o| o.pid == pid) {
                out.push(p);
            }
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

pub fn main(a: StatsArgs) -> Res<i32> {
    let dirs = match a.dir {
        Some(d) => vec![d],
        None => dirs(),
    };
    let mut procs = collect(&dirs, a.clean);
    if let Some(pid) = a.pid {
        procs.retain(|p| p.pid == pid);
        if procs.is_empty() {
            return Err(fail(format!(
                "stats: no counters for process {pid} (not running, connectx not loaded in it, \
                 no socket managed yet, or its directory is not one of {})",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if a.json {
        let items: Vec<String> = procs
            .iter()
            .map(|p| {
                let c: Vec<String> = p
                    .counters
                    .iter()
                    .map(|(k, v)| format!("{}: {v}", json::s(k)))
                    .collect();
                format!(
                    "{{\"pid\": {}, \"program\": {}, \"counters\": {{{}}}}}",
                    p.pid,
                    json::s(&p.program),
                    c.join(", ")
                )
            })
            .collect();
        println!("[{}]", items.join(",\n "));
        return Ok(0);
    }
    if procs.is_empty() {
        println!("no live process with connectx counters");
    }
    for p in &procs {
        println!("pid {} ({})", p.pid, p.program);
        for (k, v) in &p.counters {
            println!("  {k:<28} {v}");
        }
    }
    Ok(0)
}
