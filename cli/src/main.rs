//! The `connectx` command: runs programs under libconnectx.so, shows a demo,
//! and carries the small lab tools the demo and the integration tests use.
//!
//! It deliberately does not link the preload crate (it links connectx-core, the policy, for its
//! supervisor): the library's exported
//! socket hooks must never end up inside this binary.

mod cli;
mod supervise;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(cli::main(args));
}
