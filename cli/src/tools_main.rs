//! `connectx-tools`: the `connectx` command with its lab tools (`_netns`, `_serve`, `_client`,
//! `_demo-case`, ...) and build helpers (`_man`, `_completions`, `_multiarch`); installed next to
//! the library, off PATH, for `connectx demo` (cli/src/cli/tools.rs).

mod cli;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(cli::main(args));
}
