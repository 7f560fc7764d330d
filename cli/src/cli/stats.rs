//! `connectx stats [PID]`: the counters the library keeps in each process (src/stats.rs has the
//! layout and why they live in an anonymous memory file). A process's counters are found
//! through /proc: its maps say whether connectx is loaded and whether the counters exist
//! (`/memfd:connectx-counters (deleted)`); they are read through the descriptor the library
//! keeps (/proc/PID/fd/N: the process's user or root), or, if the program closed it, through
//! the mapping (/proc/PID/map_files/: root only). Every failure to look is said, never guessed.

use super::{Res, fail, json};
use std::io::ErrorKind;

/// What connectx did in running processes (counters kept by the library)
///
/// Counters per process, only those not zero (`--all` shows every one), then the totals.
/// Connects the kernel alone would have refused, by kind: tcp.shared_fixed_port,
/// udp.shared_fixed_port (a fixed port shared), udp.lock_connect (the kernel said EAGAIN).
/// tcp.per_tuple_connect counts every connect whose port the kernel chose per 4-tuple after a
/// deferred bind(ip, 0), rescue or not: which of them the kernel alone would have refused
/// depends on every other socket's port at that moment, which the hook path does not read
/// (`connectx status` shows "free for bind" per source instead). Also: refusals where the
/// bind-busy trade-off bit, lost races, EAGAIN, exhaustion, fallbacks to the kernel's behaviour.
/// The counters live in the process's memory (nothing on disk) and are read through /proc:
/// root sees every process, a user their own.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// One process (default: every process with connectx loaded)
    pid: Option<u32>,
    /// JSON instead of text
    #[arg(long)]
    json: bool,
    /// Show counters that are 0 too
    #[arg(long)]
    all: bool,
}

/// One process's counters.
pub struct Proc {
    pub pid: u32,
    pub program: String,
    pub counters: Vec<(String, u64)>,
}

/// What looking at one process found.
pub enum Look {
    /// No such process (or it ended while we looked).
    Gone,
    /// /proc/PID/maps could not be read: why, in words.
    Denied(String),
    /// Running, without connectx.
    NotLoaded,
    /// connectx is loaded: its library path, and the counters (None: nothing counted yet;
    /// Err: they exist but could not be read, and why).
    Loaded {
        lib: String,
        counters: Option<Result<Proc, String>>,
    },
}

/// The memfd's name as /proc shows it (src/stats.rs MEMFD_NAME).
const MEMFD: &str = "/memfd:connectx-counters (deleted)";

/// Whether a mapped file is the connectx library (libconnectx.so, libconnectx.so.0, ...).
pub fn is_library(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|f| f.starts_with("libconnectx.so"))
}

pub fn program(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Looks at one process.
pub fn look(pid: u32) -> Look {
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Look::Gone,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Look::Denied(format!(
                "permission denied reading /proc/{pid}/maps: {}",
                denied_advice()
            ));
        }
        // ESRCH and friends: it ended while we looked.
        Err(_) if !std::path::Path::new(&format!("/proc/{pid}")).exists() => return Look::Gone,
        Err(e) => return Look::Denied(format!("/proc/{pid}/maps: {}", super::ioerr(&e))),
    };
    let mut lib = None;
    let mut memfd = Vec::new();
    for l in maps.lines() {
        let mut f = l.splitn(6, char::is_whitespace);
        let (Some(range), _, _, _, Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path = f.next().unwrap_or("").trim();
        if lib.is_none() && is_library(path) {
            lib = Some(path.to_string());
        } else if path == MEMFD {
            memfd.push((range.to_string(), inode.to_string()));
        }
    }
    // `connectx run` supervising a program counts in its own memory (docs/supervisor.md).
    if lib.is_none() && crate::supervise::is_supervisor(pid) {
        lib = Some(crate::supervise::STATUS_LABEL.to_string());
    }
    let Some(lib) = lib else {
        return Look::NotLoaded;
    };
    // A fork child that has not counted yet may still map its parent's counters (a raw clone):
    // only a header with its own pid is its own.
    let mut found = None;
    if !memfd.is_empty() {
        found = Some(read_counters(pid, &memfd));
    }
    let counters = match found {
        Some(Ok(p)) if p.pid == pid => Some(Ok(p)),
        Some(Ok(_)) => None,
        // It ended while we looked (its /proc/PID/fd went, or it is a zombie): not a denial.
        Some(Err(_)) if !alive(pid) => return Look::Gone,
        other => other,
    };
    Look::Loaded { lib, counters }
}

/// What to do about a denial: as root, the advice to run as root would be wrong (a process
/// root may not inspect: no CAP_SYS_PTRACE over it, e.g. another user namespace's init).
pub fn denied_advice() -> &'static str {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        "denied even to root here (no ptrace access to it: another user namespace, or a \
         restricted /proc)"
    } else {
        "run as root or as the process's user"
    }
}

/// `pid` still runs: /proc/PID/stat exists and its state is not zombie or dead.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the last ')' (the command name may contain one).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X' | 'x'))
}

/// The counters of `pid`, through its descriptor, else its mapping (root).
fn read_counters(pid: u32, maps: &[(String, String)]) -> Result<Proc, String> {
    let mut denied = false;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == MEMFD) {
                match std::fs::read(e.path()) {
                    Ok(b) => {
                        if let Some(p) = parse(&b) {
                            return Ok(p);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::PermissionDenied => denied = true,
                    Err(_) => {}
                }
            }
        }
    } else {
        denied = true;
    }
    for (range, _) in maps {
        match std::fs::read(format!("/proc/{pid}/map_files/{range}")) {
            Ok(b) => {
                if let Some(p) = parse(&b) {
                    return Ok(p);
                }
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => denied = true,
            Err(_) => {}
        }
    }
    Err(if denied {
        format!(
            "permission denied reading the counters of process {pid}: {}",
            denied_advice()
        )
    } else {
        format!(
            "process {pid} closed connectx's counters descriptor: run as root to read them \
             through /proc/{pid}/map_files"
        )
    })
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Parses the counters' layout; None if it is not one (or is incomplete).
pub fn parse(b: &[u8]) -> Option<Proc> {
    if b.get(..8)? != b"CNXSTAT1" || u32_at(b, 8)? != 1 {
        return None;
    }
    let pid = u32_at(b, 12)?;
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
    Some(Proc {
        pid,
        program,
        counters,
    })
}

/// Every process of /proc, in pid order.
pub fn pids() -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// A process's counters: None, nothing counted yet; Err, they exist but could not be read.
pub type Counters = Option<Result<Proc, String>>;

/// Every process we can see with connectx loaded (pid, library, counters), and how many we
/// could not look at.
pub struct Survey {
    pub loaded: Vec<(u32, String, Counters)>,
    pub denied: usize,
}

pub fn survey(filter: impl Fn(u32) -> bool) -> Survey {
    let mut s = Survey {
        loaded: Vec::new(),
        denied: 0,
    };
    // SAFETY: no preconditions.
    let me = unsafe { libc::getpid() } as u32;
    for pid in pids() {
        if pid == me || !filter(pid) {
            continue;
        }
        match look(pid) {
            Look::Loaded { lib, counters } => s.loaded.push((pid, lib, counters)),
            // Kernel threads have empty maps; other users' processes are denied.
            Look::Denied(_) => s.denied += 1,
            Look::Gone | Look::NotLoaded => {}
        }
    }
    s
}

/// "1 process", "2 processes".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Sums of the counters of `procs`, by name, in the order they first appear.
pub fn totals<'a>(procs: impl Iterator<Item = &'a Proc>) -> Vec<(String, u64)> {
    let mut t: Vec<(String, u64)> = Vec::new();
    for p in procs {
        for (k, v) in &p.counters {
            match t.iter_mut().find(|(n, _)| n == k) {
                Some(e) => e.1 += v,
                None => t.push((k.clone(), *v)),
            }
        }
    }
    t
}

fn json_counters(c: &[(String, u64)]) -> String {
    let c: Vec<String> = c
        .iter()
        .map(|(k, v)| format!("{}: {v}", json::s(k)))
        .collect();
    format!("{{{}}}", c.join(", "))
}

/// One process's counters as JSON: `{"pid", "program", "counters"}` or `"error"`.
pub fn json_proc(pid: u32, c: &Option<Result<Proc, String>>) -> String {
    match c {
        Some(Ok(p)) => format!(
            "{{\"pid\": {pid}, \"program\": {}, \"counters\": {}}}",
            json::s(&p.program),
            json_counters(&p.counters)
        ),
        None => format!(
            "{{\"pid\": {pid}, \"program\": {}, \"counters\": {{}}}}",
            json::s(&program(pid))
        ),
        Some(Err(e)) => format!(
            "{{\"pid\": {pid}, \"program\": {}, \"error\": {}}}",
            json::s(&program(pid)),
            json::s(e)
        ),
    }
}

fn text_counters(c: &[(String, u64)], all: bool) -> String {
    let mut o = String::new();
    for (k, v) in c.iter().filter(|(_, v)| all || *v != 0) {
        o.push_str(&format!("  {k:<28} {v}\n"));
    }
    if o.is_empty() {
        o.push_str("  (all 0)\n");
    }
    o
}

pub fn main(a: StatsArgs) -> Res<i32> {
    let survey = match a.pid {
        Some(pid) => match look(pid) {
            Look::Gone => return Err(fail(format!("stats: no process {pid}"))),
            Look::Denied(why) => return Err(fail(format!("stats: {why}"))),
            Look::NotLoaded => {
                return Err(fail(format!(
                    "stats: process {pid} ({}) is running but has no connectx loaded",
                    program(pid)
                )));
            }
            Look::Loaded { lib, counters } => Survey {
                loaded: vec![(pid, lib, counters)],
                denied: 0,
            },
        },
        None => survey(|_| true),
    };
    let read: Vec<&Proc> = survey
        .loaded
        .iter()
        .filter_map(|(_, _, c)| c.as_ref()?.as_ref().ok())
        .collect();
    let errors: Vec<&String> = survey
        .loaded
        .iter()
        .filter_map(|(_, _, c)| c.as_ref()?.as_ref().err())
        .collect();
    if a.json {
        let items: Vec<String> = survey
            .loaded
            .iter()
            .map(|(pid, _, c)| json_proc(*pid, c))
            .collect();
        println!(
            "{{\"processes\": [{}], \"totals\": {}, \"not_inspected\": {}}}",
            items.join(",\n "),
            json_counters(&totals(read.iter().copied())),
            survey.denied
        );
    } else {
        if survey.loaded.is_empty() {
            println!("no process with connectx loaded");
        }
        for (pid, _, c) in &survey.loaded {
            match c {
                Some(Ok(p)) => {
                    println!("pid {pid} ({})", p.program);
                    print!("{}", text_counters(&p.counters, a.all));
                }
                None => println!("pid {pid} ({}): nothing counted yet", program(*pid)),
                Some(Err(e)) => println!("pid {pid} ({}): {e}", program(*pid)),
            }
        }
        if a.pid.is_none() && read.len() > 1 {
            println!("total of {} processes", read.len());
            print!("{}", text_counters(&totals(read.iter().copied()), a.all));
        }
        if survey.denied > 0 {
            println!(
                "{} not inspected (permission denied): {}",
                plural(survey.denied, "process", "processes"),
                denied_advice()
            );
        }
    }
    for e in &errors {
        eprintln!("connectx: stats: {e}");
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}
