//! The lab tools (used by `connectx demo`, the tests and scripts/; not a stable interface) and
//! the build helpers scripts/install.sh runs. They are not clap subcommands of `connectx`, so
//! no help, man page or completion ever shows them; each has its own small parser.
//! Compiled with the `tools` feature (cli/Cargo.toml) and always in `connectx-tools`.

mod client;
mod dups;
mod netns;
mod serve;
mod sock;
mod usage;

use super::{Res, docs, libpath, report, usage_err};
// For the tools' own modules (`super::args` there).
use super::{Fail, args, daemon, fail, ioerr};
use std::ffi::OsString;

/// `connectx _TOOL ARGS...` (or `connectx-tools _TOOL ARGS...`).
pub fn main(args: Vec<OsString>) -> i32 {
    let Some((tool, rest)) = args.split_first() else {
        return report(Err(usage_err(
            "no tool given (`connectx-tools _tools` lists them)",
        )));
    };
    let rest = rest.to_vec();
    let r: Res<i32> = match tool.to_string_lossy().as_ref() {
        "_netns" => netns::main(rest),
        "_serve" => serve::main(rest),
        "_client" => client::main(rest),
        "_dups" => dups::main(rest),
        "_demo-case" => super::demo::case_main(rest),
        "_tools" => {
            print!("{}", usage::TOOLS);
            Ok(0)
        }
        "_man" => match rest.as_slice() {
            [dir] => docs::man(std::path::Path::new(dir)),
            _ => Err(usage_err("_man DIR")),
        },
        "_completions" => match rest.as_slice() {
            [shell] => docs::completions(&shell.to_string_lossy()),
            _ => Err(usage_err("_completions bash|zsh|fish|elvish|powershell")),
        },
        "_multiarch" => {
            println!("{}", libpath::MULTIARCH);
            Ok(0)
        }
        t => Err(usage_err(format!(
            "unknown tool `{t}` (`connectx-tools _tools` lists them)"
        ))),
    };
    report(r)
}
