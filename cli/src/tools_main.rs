//! `connectx-tools`: the `connectx` command with its lab tools (`_netns`, `_serve`, `_client`,
//! `_demo-case`, ...) and build helpers (`_man`, `_completions`, `_multiarch`); installed next to
//! the library, off PATH, for `connectx demo` (cli/src/cli/tools.rs).

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
