//! Subcommand dispatch for the `connectx` command.

mod args;
mod client;
mod daemon;
mod demo;
mod demo_cases;
mod docs;
mod dups;
mod elf;
mod json;
mod libpath;
mod netns;
mod run;
mod serve;
mod sock;
mod sockdiag;
mod stats;
mod status;
mod usage;

use clap::{CommandFactory, Parser, Subcommand};
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
#[derive(Parser)]
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

/// Arguments of a test tool, handed to its own small parser.
#[derive(clap::Args)]
pub struct Raw {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

#[derive(Subcommand)]
enum Cmd {
    Run(run::RunArgs),
    Demo(demo::DemoArgs),
    Status(status::StatusArgs),
    Stats(stats::StatsArgs),
    // Test tools, used by the demo, the tests and scripts/; not a stable interface, so out of
    // the help (`connectx _tools` lists them).
    #[command(name = "_netns", hide = true, disable_help_flag = true)]
    Netns(Raw),
    #[command(name = "_serve", hide = true, disable_help_flag = true)]
    Serve(Raw),
    #[command(name = "_client", hide = true, disable_help_flag = true)]
    Client(Raw),
    #[command(name = "_dups", hide = true, disable_help_flag = true)]
    Dups(Raw),
    #[command(name = "_demo-case", hide = true, disable_help_flag = true)]
    DemoCase(Raw),
    /// Print the test tools' usage
    #[command(name = "_tools", hide = true)]
    Tools,
    /// Write the man pages (connectx.1, connectx-run.1, ...) into DIR
    #[command(name = "_man", hide = true)]
    Man {
        dir: std::path::PathBuf,
    },
    /// Print the completion script for SHELL
    #[command(name = "_completions", hide = true)]
    Completions {
        shell: clap_complete::Shell,
    },
    /// Print the Debian multiarch triplet the command looks for the library under
    #[command(name = "_multiarch", hide = true)]
    Multiarch,
}

pub fn command() -> clap::Command {
    Cli::command()
}

pub fn main(args: Vec<OsString>) -> i32 {
    let argv = std::iter::once(OsString::from("connectx")).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
    let result = match cli.cmd {
        Cmd::Run(a) => run::main(a),
        Cmd::Demo(a) => demo::main(a),
        Cmd::Status(a) => status::main(a),
        Cmd::Stats(a) => stats::main(a),
        Cmd::Netns(r) => netns::main(r.args),
        Cmd::Serve(r) => serve::main(r.args),
        Cmd::Client(r) => client::main(r.args),
        Cmd::Dups(r) => dups::main(r.args),
        Cmd::DemoCase(r) => demo::case_main(r.args),
        Cmd::Tools => {
            print!("{}", usage::TOOLS);
            Ok(0)
        }
        Cmd::Man { dir } => docs::man(&dir),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "connectx", &mut std::io::stdout());
            Ok(0)
        }
        Cmd::Multiarch => {
            println!("{}", libpath::MULTIARCH);
            Ok(0)
        }
    };
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
            eprintln!("connectx: {msg} (try `connectx --help`)");
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
