//! `connectx run [options] -- CMD [ARGS...]`: exec CMD with the library
//! preloaded. exec (not spawn) so that CMD's exit status, signals and pid are
//! exactly its own.

use super::args::{Args, on_off};
use super::{Fail, Res, libpath, usage_err};
use std::os::unix::process::CommandExt;
use std::process::Command;

const LOG_LEVELS: [&str; 5] = ["off", "error", "warn", "info", "debug"];

pub fn main(raw: Vec<std::ffi::OsString>) -> Res<i32> {
    let mut a = Args::new(raw);
    let mut lib: Option<String> = None;
    let mut env: Vec<(&str, String)> = Vec::new();
    while let Some(f) = a.next_flag()? {
        match f.as_str() {
            "--tcp" => env.push(("CONNECTX_TCP", on_off(&f, &a.value()?)?.into())),
            "--udp" => env.push(("CONNECTX_UDP", on_off(&f, &a.value()?)?.into())),
            "--log" => {
                let v = a.value()?;
                if !LOG_LEVELS.contains(&v.as_str()) {
                    return Err(usage_err(format!(
                        "option --log: `{v}` is not one of {}",
                        LOG_LEVELS.join(", ")
                    )));
                }
                env.push(("CONNECTX_LOG", v));
            }
            "--log-file" => env.push(("CONNECTX_LOG_FILE", a.value()?)),
            "--getsockname" => {
                let v = a.value()?;
                if v != "bind" && v != "port0" {
                    return Err(usage_err(format!(
                        "option --getsockname: `{v}` is not bind or port0"
                    )));
                }
                env.push(("CONNECTX_GETSOCKNAME", v));
            }
            "--bind-busy" => {
                let v = a.value()?;
                if v != "share" && v != "kernel" {
                    return Err(usage_err(format!(
                        "option --bind-busy: `{v}` is not share or kernel"
                    )));
                }
                env.push(("CONNECTX_BIND_BUSY", v));
            }
            "--lib" => lib = Some(a.value()?),
            "-h" | "--help" => {
                print!("{}", super::usage::TEXT);
                return Ok(0);
            }
            _ => return Err(a.unknown(&f, "run")),
        }
    }
    let cmd = a.rest();
    let Some(prog) = cmd.first() else {
        return Err(usage_err(
            "run: no command given (usage: connectx run [options] -- CMD [ARGS...])",
        ));
    };
    let lib = libpath::find(lib.as_deref())?;
    let existing = std::env::var("LD_PRELOAD").ok();
    let preload = libpath::preload_value(&lib, existing.as_deref());

    let mut c = Command::new(prog);
    c.args(&cmd[1..]).env("LD_PRELOAD", preload);
    for (k, v) in env {
        c.env(k, v);
    }
    // exec only returns on failure.
    let err = c.exec();
    Err(Fail {
        code: 127,
        msg: format!(
            "cannot run {}: {}",
            prog.to_string_lossy(),
            super::ioerr(&err)
        ),
    })
}
