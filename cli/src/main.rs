//! The `connectx` command: runs programs under libconnectx.so, shows a demo, status and
//! counters; built with the `tools` feature (a cargo build) it also carries the small lab tools
//! the demo and the integration tests use (cli/src/cli/tools.rs).
//!
//! It deliberately does not link the preload crate (it links connectx-core, the policy, for its
//! supervisor): the library's exported
//! socket hooks must never end up inside this binary.

mod cli;
mod supervise;

fn main() {
    // Like any Unix filter: `connectx status | head` ends quietly when head exits, rather than
    // panicking on EPIPE (Rust ignores SIGPIPE by default).
    // SAFETY: setting a signal's disposition to the default, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(cli::main(args));
}
