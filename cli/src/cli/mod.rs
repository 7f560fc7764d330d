//! Subcommand dispatch for the `connectx` command.
//!
//! The shipped command has only the public subcommands (run, demo, status, stats): its help
//! and completions show nothing else. The lab tools the demo and the tests use (`_netns`,
//! `_serve`, `_client`, ...) and the build helpers (`_man`, `_completions`, `_multiarch`) are
//! in `tools.rs`, compiled with the `tools` feature (on by default, so a `cargo build` has
//! them: the README's demo command and the tests run `connectx _serve ...`), and always in the
//! `connectx-tools` binary, which the package installs next to the library, off PATH, for
//! `connectx demo`. The package's `connectx` is built without the feature.

#[cfg(feature = "tools")]
mod args;
#[cfg(feature = "tools")]
mod daemon;
mod demo;
#[cfg(feature = "tools")]
mod demo_cases;
#[cfg(feature = "tools")]
mod docs;
mod elf;
mod json;
mod libpath;
mod run;
mod sockdiag;
mod stats;
mod status;
#[cfg(feature = "tools")]
pub mod tools;

use clap::{CommandFactory, FromArgMatches, Subcommand};
use std::ffi::OsString;

/// A failure the command reports as one line on stderr, with an exit code.
pub struct Fail {
    pub code: i32,
    pub msg: String,
}

/// Bad command line: exit status 2.
pub fn usage_err(msg: impl Into<String>) -> Fail {
    Fail {
        code: 2,
        msg: msg.into(),
    }
}

/// Anything else that went wrong: exit status 1.
pub fn fail(msg: impl Into<String>) -> Fail {
    Fail {
        code: 1,
        msg: msg.into(),
    }
}

pub type Res<T> = Result<T, Fail>;

/// Stop unmodified programs from running out of ephemeral ports.
///
/// Runs programs with libconnectx.so preloaded, shows how close this network namespace is to
/// running out of ports, and what connectx did in running processes.
#[derive(clap::Parser)]
#[command(
    name = "connectx",
    version,
    about = "Stop unmodified programs from running out of ephemeral ports",
    after_help = "The library is also used without this command: LD_PRELOAD=/path/to/libconnectx.so CMD"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Run(run::RunArgs),
    Demo(demo::DemoArgs),
    Status(status::StatusArgs),
    Stats(stats::StatsArgs),
}

/// `connectx --version`: the command's version, and the library's (version, SONAME, path) as
/// `connectx run` would find it (read from the file, not loaded).
fn version_text() -> String {
    let lib = match libpath::find(None) {
        Ok(p) => {
            let v = elf::library_version(&p).unwrap_or_else(|| "unknown version".into());
            let so = elf::soname(&p).unwrap_or_else(|| "no SONAME".into());
            format!("library {v} ({so}, {})", p.display())
        }
        Err(f) => format!("library not found: {}", f.msg),
    };
    format!("{}\n{lib}", env!("CARGO_PKG_VERSION"))
}

#[cfg(feature = "tools")]
pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main(args: Vec<OsString>) -> i32 {
    #[cfg(feature = "tools")]
    if args
        .first()
        .is_some_and(|a| a.as_encoded_bytes().starts_with(b"_"))
    {
        return tools::main(args);
    }
    let wants_version = args.iter().any(|a| a == "--version" || a == "-V");
    let argv = std::iter::once(OsString::from("connectx")).chain(args);
    let mut cmd = Cli::command();
    if wants_version {
        cmd = cmd.version(version_text().leak() as &str);
    }
    let cli = match cmd
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
    let result = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Demo(a) => demo::main(a),
        Cmd::Status(a) => status::main(a),
        Cmd::Stats(a) => stats::main(a),
    };
    report(result)
}

/// A subcommand's result as the exit status (a failure: one line on stderr).
pub fn report(result: Res<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("connectx: {}", f.msg);
            f.code
        }
    }
}

/// Help and version go to stdout with status 0; a bad command line is one line on stderr
/// (what is wrong and where to look), status 2, so scripts and logs get one line per mistake.
fn clap_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{}", e.render());
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", e.render());
            2
        }
        _ => {
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or("bad command line");
            let mut msg = first.strip_prefix("error: ").unwrap_or(first).to_string();
            // "the following required arguments were not provided:" names them on the next line.
            if msg.ends_with(':') {
                msg = format!("{msg} {}", lines.next().unwrap_or(""));
            }
            // clap's hints, kept on the same line: the similar subcommand or option, the
            // accepted values.
            let hints: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter_map(|l| {
                    l.strip_prefix("tip: ").map(str::to_string).or_else(|| {
                        l.strip_prefix("[possible values: ")
                            .and_then(|v| v.strip_suffix(']'))
                            .map(|v| format!("possible values: {v}"))
                    })
                })
                .collect();
            let mut hints = hints.join("; ");
            if !hints.is_empty() {
                hints.push_str("; ");
            }
            eprintln!("connectx: {msg} ({hints}try `connectx --help`)");
            2
        }
    }
}

/// An io::Error as text without the "(os error N)" suffix.
pub fn ioerr(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
