//! `connectx demo`: the problem and the fix, measured, in throwaway network
//! namespaces with a 10-port range and three destinations.
//!
//! Every figure comes from a fresh namespace (`connectx _netns ... --
//! connectx _demo-case CASE without|with`), so TIME_WAIT entries or held
//! ports of one run never influence another. The demo process itself never
//! has LD_PRELOAD; only the measured clients get it.

#[cfg(feature = "tools")]
use super::args::Args;
#[cfg(feature = "tools")]
use super::usage_err;
use super::{Res, fail, libpath};
#[cfg(feature = "tools")]
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RANGE: &str = "40000-40009";
const R: usize = 10;
const DSTS: [&str; 3] = ["127.0.0.2:7", "127.0.0.3:7", "127.0.0.4:7"];
const FIXED_PORT: u16 = 5000;

struct Case {
    name: &'static str,
    recipe: String,
    /// The figure the with-library run must print.
    want: String,
    why: &'static str,
    needs: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let d = DSTS.len();
    let c = |name, recipe: String, want: String, why, needs| Case {
        name,
        recipe,
        want,
        why,
        needs,
    };
    let rd = (R * d).to_string();
    vec![
        c(
            "tcp-bind0",
            "TCP bind(127.0.0.1,0) + connect".into(),
            rd.clone(),
            "R×D",
            &[],
        ),
        c(
            "tcp-port",
            format!("TCP bind(127.0.0.1,{FIXED_PORT}) + connect"),
            d.to_string(),
            "1 per destination",
            &[],
        ),
        c(
            "udp-connect",
            "UDP connect (own reply on each)".into(),
            rd.clone(),
            "R×D",
            &[],
        ),
        c(
            "udp-bind0",
            "UDP bind(127.0.0.1,0) + connect".into(),
            rd,
            "R×D",
            &[],
        ),
        c(
            "tcp-bind0-supervised",
            "TCP bind(127.0.0.1,0) + connect, supervised".into(),
            (R * d).to_string(),
            "R×D",
            &[],
        ),
        c(
            "curl",
            format!("curl --local-port {FIXED_PORT}, run twice"),
            "2/2".into(),
            "",
            &["curl"],
        ),
        c(
            "nc",
            format!("nc -s 127.0.0.1 while {R} ports are busy"),
            "ok".into(),
            "",
            &["nc"],
        ),
        c(
            "dig",
            "dig -b 127.0.0.1 while UDP ports are busy".into(),
            "ok".into(),
            "",
            &["dig", "dnsmasq"],
        ),
    ]
}

/// Show the problem and the fix, measured in throwaway network namespaces
///
/// A 10-port range and three destinations: legacy client recipes without and with the library.
/// Needs root or unprivileged user namespaces; curl, nc and dig rows where they are installed.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Library to use (default: as `connectx run` finds it)
    #[arg(long, value_name = "PATH")]
    lib: Option<String>,
}

pub fn main(a: DemoArgs) -> Res<i32> {
    let lib = libpath::find(a.lib.as_deref())?;
    let exe = tools_exe(&lib)?;

    // Fail before printing anything if no namespace can be made.
    measure(&exe, &lib, "probe", "without")?;
    println!(
        "connectx demo: {} ports ({RANGE}), {} destinations ({}), source 127.0.0.1;",
        R,
        DSTS.len(),
        DSTS.join(", ")
    );
    println!(
        "each figure measured in a fresh network namespace; library {}\n",
        lib.display()
    );
    let mut rows = vec![[
        "recipe".to_string(),
        "without connectx".into(),
        "with connectx".into(),
        "expected with".into(),
    ]];
    let mut notes = Vec::new();
    let mut skipped = Vec::new();
    let mut all_ok = true;
    for case in cases() {
        if let Some(missing) = case.needs.iter().find(|t| which(t).is_none()) {
            skipped.push(format!(
                "{}: skipped, `{missing}` is not installed",
                case.name
            ));
            continue;
        }
        let mut cells = Vec::new();
        let mut skip = None;
        for mode in ["without", "with"] {
            let (value, detail) = measure(&exe, &lib, case.name, mode)?;
            if value == "skip" {
                skip = Some(detail);
                break;
            }
            if mode == "with" && value != case.want {
                all_ok = false;
            }
            // Long tool messages go under the table, keyed by a number.
            cells.push(if detail.is_empty() {
                value
            } else if detail.chars().count() <= 26 {
                format!("{value} ({detail})")
            } else {
                notes.push(format!(
                    "[{}] {} {mode} connectx: {detail}",
                    notes.len() + 1,
                    case.name
                ));
                format!("{value} [{}]", notes.len())
            });
        }
        if let Some(why) = skip {
            skipped.push(format!("{}: skipped, {why}", case.name));
            continue;
        }
        let expected = if case.why.is_empty() {
            case.want.clone()
        } else {
            format!("{} ({})", case.want, case.why)
        };
        rows.push([
            case.recipe.clone(),
            cells[0].clone(),
            cells[1].clone(),
            expected,
        ]);
    }
    print_table(&rows);
    for n in notes.iter().chain(&skipped) {
        println!("{n}");
    }
    if all_ok {
        println!("\nWith connectx every recipe reached the expected figure.");
        Ok(0)
    } else {
        println!("\nSome recipe did not reach the expected figure with connectx.");
        Ok(1)
    }
}

fn print_table(rows: &[[String; 4]]) {
    let mut w = [0usize; 4];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for (n, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", cells.join(" | ").trim_end());
        if n == 0 {
            println!(
                "{}",
                w.iter()
                    .map(|x| "-".repeat(*x))
                    .collect::<Vec<_>>()
                    .join("-+-")
            );
        }
    }
}

/// `_netns` exits with this when no namespace can be made (tools/netns.rs NO_NAMESPACE).
const NO_NAMESPACE: i32 = 3;

/// The binary with the lab tools: this one where they are compiled in (a cargo build), else
/// `connectx-tools` next to the library (the package installs it there, off PATH).
fn tools_exe(lib: &Path) -> Res<PathBuf> {
    if cfg!(feature = "tools") {
        return std::env::current_exe()
            .map_err(|e| fail(format!("demo: cannot find own executable: {e}")));
    }
    let dir = lib.parent().unwrap_or(Path::new("/"));
    let t = dir.join("connectx-tools");
    if t.is_file() {
        Ok(t)
    } else {
        Err(fail(format!(
            "demo: {} is missing (the package installs the demo's servers and clients next to \
             the library; from a source tree, `cargo build --release` builds them into \
             connectx)",
            t.display()
        )))
    }
}

/// Runs one case in a fresh namespace; returns (figure, detail).
fn measure(exe: &Path, lib: &Path, case: &str, mode: &str) -> Res<(String, String)> {
    let mut c = Command::new(exe);
    c.args(["_netns", "--range", RANGE, "--"])
        .arg(exe)
        .args(["_demo-case", case, mode, "--lib"])
        .arg(lib);
    let (code, out, err) = run_bounded(c, Duration::from_secs(90))?;
    if code == Some(NO_NAMESPACE) {
        return Err(fail(format!(
            "demo needs a network namespace: {}",
            err.trim().trim_start_matches("connectx: ")
        )));
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("value="))
        .unwrap_or("");
    if line.is_empty() {
        let why = err.lines().last().unwrap_or("no output").to_string();
        return Ok(("error".into(), why));
    }
    let value = field(line, "value").unwrap_or("?").to_string();
    let detail = line
        .split_once(" detail=")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Ok((value, detail))
}

pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Spawn, collect stdout/stderr, kill after `limit`. (exit code, stdout, stderr)
fn run_bounded(mut c: Command, limit: Duration) -> Res<(Option<i32>, String, String)> {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {:?}: {e}", c.get_program())))?;
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = so.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = se.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = t_out.join().unwrap_or_default();
    let err = t_err.join().unwrap_or_default();
    Ok((status.and_then(|s| s.code()), out, err))
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

// ---- inside the namespace -------------------------------------------------

#[cfg(feature = "tools")]
pub fn case_main(raw: Vec<OsString>) -> Res<i32> {
    let mut a = Args::new(raw);
    let mut lib = None;
    let mut pos = Vec::new();
    loop {
        match a.next_flag()? {
            Some(f) if f == "--lib" => lib = Some(a.value()?),
            Some(f) => return Err(a.unknown(&f, "_demo-case")),
            None => {
                let rest = a.rest();
                if rest.is_empty() {
                    break;
                }
                // Positional word: take it and continue with the options.
                pos.push(rest[0].to_string_lossy().to_string());
                a = Args::new(rest[1..].to_vec());
            }
        }
    }
    let [case, mode] = pos.as_slice() else {
        return Err(usage_err("_demo-case CASE without|with --lib PATH"));
    };
    let lib = PathBuf::from(lib.ok_or_else(|| usage_err("_demo-case: --lib PATH is required"))?);
    let with = match mode.as_str() {
        "with" => true,
        "without" => false,
        _ => return Err(usage_err("_demo-case: mode is without or with")),
    };
    let exe =
        std::env::current_exe().map_err(|e| fail(format!("cannot find own executable: {e}")))?;
    let cx = Cx { exe, lib };
    let (value, detail) = super::demo_cases::run(&cx, case, with)?;
    println!("value={value} detail={detail}");
    Ok(0)
}

/// How a case starts the command's own tools, with or without the library.
#[cfg(feature = "tools")]
pub struct Cx {
    pub exe: PathBuf,
    pub lib: PathBuf,
}

#[cfg(feature = "tools")]
impl Cx {
    pub fn cmd(&self, args: &[&str], preload: bool) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args);
        self.env(&mut c, preload);
        c
    }

    pub fn tool(&self, prog: &str, args: &[&str], preload: bool) -> Command {
        // Same lookup as the "installed?" check (which includes sbin).
        let mut c = Command::new(which(prog).unwrap_or_else(|| prog.into()));
        c.args(args);
        self.env(&mut c, preload);
        c
    }

    fn env(&self, c: &mut Command, preload: bool) {
        c.env_remove("LD_PRELOAD");
        if preload {
            c.env("LD_PRELOAD", &self.lib);
        }
        c.stdin(Stdio::null());
    }
}
