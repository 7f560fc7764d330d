//! Man pages from the same clap definitions as `--help` (so they never drift): connectx.1 and
//! one page per visible subcommand (connectx-run.1, ...), written by `connectx _man DIR`
//! (scripts/install.sh calls it). Completions: `connectx _completions SHELL`.

use super::{Res, fail};
use std::path::Path;

pub fn man(dir: &Path) -> Res<i32> {
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("_man: {}: {e}", dir.display())))?;
    let top = super::command();
    write(dir, "connectx", top.clone())?;
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("connectx-{}", sub.get_name());
        // clap_mangen titles the page by the command's name: give it the page's.
        let cmd = sub
            .clone()
            .name(&*name.clone().leak())
            .version(env!("CARGO_PKG_VERSION"));
        write(dir, &name, cmd)?;
    }
    Ok(0)
}

/// The completion script for `shell`: public subcommands only (the tools are no clap
/// subcommands), and `run -- CMD` completes commands (CMD is a command name, its arguments
/// are files).
pub fn completions(shell: &str) -> Res<i32> {
    let shell: clap_complete::Shell = shell.parse().map_err(|_| {
        super::usage_err(format!(
            "_completions: `{shell}` is not one of bash, zsh, fish, elvish, powershell"
        ))
    })?;
    clap_complete::generate(
        shell,
        &mut super::command(),
        "connectx",
        &mut std::io::stdout(),
    );
    Ok(0)
}

fn write(dir: &Path, name: &str, cmd: clap::Command) -> Res<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| fail(format!("_man: {name}: {e}")))?;
    let p = dir.join(format!("{name}.1"));
    std::fs::write(&p, buf).map_err(|e| fail(format!("_man: {}: {e}", p.display())))
}
