//! Subcommand dispatch for the `connectx` command.

mod args;
mod client;
mod daemon;
mod demo;
mod demo_cases;
mod dups;
mod libpath;
mod netns;
mod run;
mod serve;
mod sock;
mod usage;

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

pub fn main(args: Vec<OsString>) -> i32 {
    let Some(first) = args.first() else {
        eprint!("{}", usage::TEXT);
        return 2;
    };
    let Some(cmd) = first.to_str() else {
        eprintln!("connectx: unknown command {first:?} (try `connectx --help`)");
        return 2;
    };
    let rest = args[1..].to_vec();
    let result = match cmd {
        "-h" | "--help" | "help" => {
            print!("{}", usage::TEXT);
            Ok(0)
        }
        "-V" | "--version" => {
            println!("connectx {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        "run" => run::main(rest),
        "demo" => demo::main(rest),
        "_demo-case" => demo::case_main(rest),
        "_netns" => netns::main(rest),
        "_serve" => serve::main(rest),
        "_client" => client::main(rest),
        "_dups" => dups::main(rest),
        _ => Err(usage_err(format!(
            "unknown command `{cmd}` (try `connectx --help`)"
        ))),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("connectx: {}", f.msg);
            f.code
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
