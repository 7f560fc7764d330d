//! Man pages from the same clap definitions as `--help` (so options never drift), plus the
//! sections an operator looks for (ENVIRONMENT, FILES, EXIT STATUS, EXAMPLES, SEE ALSO):
//! connectx.1, one page per subcommand (connectx-run.1, ...), and libconnectx.7 for the library
//! itself, written by `connectx _man DIR` (scripts/install.sh). Completions:
//! `connectx _completions SHELL`.
//!
//! `LIBRARY_ENV` lists every variable the library reads; tests/install.rs checks it against
//! the library's source, so a new variable cannot go undocumented.

use super::{Res, fail};
use std::path::Path;

/// The library's variables: name, accepted values, default, what it does.
pub const LIBRARY_ENV: &[(&str, &str, &str, &str)] = &[
    (
        "CONNECTX",
        "1 or 0 (on/off, true/false, yes/no)",
        "1",
        "master switch",
    ),
    ("CONNECTX_TCP", "1 or 0", "1", "manage TCP sockets"),
    ("CONNECTX_UDP", "1 or 0", "1", "manage UDP sockets"),
    (
        "CONNECTX_LOG",
        "off, error, warn, info, debug",
        "warn",
        "log level: info adds one line per exhausted source and per first fallback; debug \
         explains every call left alone",
    ),
    (
        "CONNECTX_LOG_FILE",
        "a path",
        "stderr",
        "log file, appended, created 0600, never through a symbolic link",
    ),
    (
        "CONNECTX_GETSOCKNAME",
        "bind, port0",
        "bind",
        "what getsockname answers between bind(ip, 0) and connect: the real port (bind) or 0",
    ),
    (
        "CONNECTX_BIND_BUSY",
        "share, kernel",
        "share",
        "a bind to a busy port: shared where it can be (share), or the kernel's EADDRINUSE \
         for programs that walk a port range on bind errors (kernel)",
    ),
    (
        "CONNECTX_STATS",
        "on, off",
        "on",
        "publish the process's counters for connectx stats and status (memory only, read \
         through /proc)",
    ),
    (
        "CONNECTX_SUPERVISED",
        "1",
        "unset",
        "set by connectx run for a tree it supervises (connectx-run(1)): a library loaded \
         anyway stands down where a seccomp filter is in place, so no call is handled twice; \
         not a user setting",
    ),
    (
        "CONNECTX_STATS_DIR",
        "off",
        "unset",
        "obsolete: off disables the counters like CONNECTX_STATS=off; any other value is \
         ignored with a warning (counters are no longer files)",
    ),
];

/// Escapes text for roff (backslash, leading dot or quote).
fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn section(title: &str, body: &str) -> String {
    format!(".SH {title}\n{body}")
}

/// `.TP` entries: a bold term and its text.
fn entries(items: &[(&str, String)]) -> String {
    items
        .iter()
        .map(|(t, d)| format!(".TP\n\\fB{}\\fR\n{}\n", roff(t), roff(d)))
        .collect()
}

fn library_env() -> String {
    let items: Vec<(&str, String)> = LIBRARY_ENV
        .iter()
        .map(|(n, v, d, w)| (*n, format!("{w}. Accepted: {v}; default: {d}.")))
        .collect();
    entries(&items)
        + ".PP\nA bad value gets one warning line naming the variable and what is accepted; the \
           default applies.\n"
}

const MULTIARCH_LIB: &str = "/usr/lib/<multiarch>/connectx";

fn files() -> String {
    entries(&[
        (
            &format!("{MULTIARCH_LIB}/libconnectx.so"),
            "the library (SONAME libconnectx.so.0); connectx run finds it there, next to the \
             command in a build tree, or where --lib or CONNECTX_LIB says"
                .into(),
        ),
        (
            &format!("{MULTIARCH_LIB}/connectx-tools"),
            "the servers and clients connectx demo runs in its namespaces (not a stable \
             interface)"
                .into(),
        ),
        (
            "/usr/share/doc/connectx/connectx.conf",
            "a systemd drop-in that runs a service with the library".into(),
        ),
        (
            "/proc/PID/fd/N -> /memfd:connectx-counters (deleted)",
            "a process's counters: memory only, gone with the process; connectx stats and \
             status read them as root or as the process's user"
                .into(),
        ),
    ])
}

const SEE_ALSO_ALL: &[&str] = &[
    "connectx(1)",
    "connectx-run(1)",
    "connectx-status(1)",
    "connectx-stats(1)",
    "connectx-demo(1)",
    "libconnectx(7)",
    "ld.so(8)",
    "ss(8)",
    "ip-netns(8)",
    "systemd.exec(5)",
];

fn see_also(me: &str) -> String {
    let refs: Vec<String> = SEE_ALSO_ALL
        .iter()
        .filter(|r| !r.starts_with(&format!("{me}(")))
        .map(|r| {
            let (n, s) = r.split_once('(').unwrap();
            format!("\\fB{}\\fR({s}", roff(n))
        })
        .collect();
    section("SEE ALSO", &format!("{}\n", refs.join(",\n")))
}

fn examples(items: &[(&str, &str)]) -> String {
    let mut o = String::new();
    for (what, cmd) in items {
        o.push_str(&format!(
            ".PP\n{}\n.PP\n.RS\n.nf\n{}\n.fi\n.RE\n",
            roff(what),
            roff(cmd)
        ));
    }
    section("EXAMPLES", &o)
}

/// The extra sections of each page.
fn extra(page: &str) -> String {
    match page {
        "connectx" => [
            section(
                "ENVIRONMENT",
                &(entries(&[
                    (
                        "CONNECTX_LIB",
                        "the library connectx run and demo use, if --lib is not given".into(),
                    ),
                    (
                        "CONNECTX_SUPERVISE_CALLS",
                        "bind: a supervised tree traps bind only (TCP bind(ip, 0) deferred, no \
                         connect pays a round trip); see docs/supervisor.md"
                            .into(),
                    ),
                ]) + ".PP\nThe library itself reads:\n"
                    + &library_env()),
            ),
            section("FILES", &files()),
            section(
                "EXIT STATUS",
                &entries(&[
                    ("0", "success".into()),
                    ("1", "an error (one line on standard error says what)".into()),
                    ("2", "a bad command line".into()),
                    ("3", "connectx status: a destination is full".into()),
                    (
                        "other",
                        "connectx run: the program's own status; 126 or 127 if it cannot be run"
                            .into(),
                    ),
                ]),
            ),
            examples(&[
                ("Run a program with the library:", "connectx run -- curl --local-port 5000 http://10.0.0.2/"),
                ("See how close each source address and destination is to running out of ports:", "connectx status"),
                ("What connectx did in running processes:", "connectx stats"),
                ("Without the command:", "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/connectx/libconnectx.so CMD"),
            ]),
            see_also("connectx"),
        ]
        .concat(),
        "connectx-run" => [
            section(
                "ENVIRONMENT",
                &(entries(&[
                    ("CONNECTX_LIB", "the library, if --lib is not given".into()),
                    (
                        "CONNECTX_SUPERVISE_CALLS",
                        "bind: under --supervise, trap bind only".into(),
                    ),
                    ("LD_PRELOAD", "the library is put first, once; the rest is kept".into()),
                ]) + ".PP\nEach option sets the library's variable (libconnectx(7)); a variable \
                      already set is passed on unless the option overrides it.\n"),
            ),
            section(
                "EXIT STATUS",
                &entries(&[
                    ("CMD's status", "the program's own".into()),
                    ("126", "CMD exists but cannot be executed".into()),
                    ("127", "CMD is not found".into()),
                    ("2", "a bad command line, or a library missing or not loadable".into()),
                ]),
            ),
            examples(&[
                ("A legacy client:", "connectx run -- nc -s 10.0.0.1 10.0.0.2 80"),
                ("A program that walks a port range on bind errors:", "connectx run --bind-busy kernel -- curl --local-port 30000-30009 URL"),
                ("Log what connectx does, to a file:", "connectx run --log info --log-file /tmp/cx.log -- CMD"),
            ]),
            see_also("connectx-run"),
        ]
        .concat(),
        "connectx-status" => [
            section(
                "EXIT STATUS",
                &entries(&[
                    ("0", "no destination is full".into()),
                    ("3", "a destination shown is full (not with --prometheus)".into()),
                    ("1", "an error (SOCK_DIAG, the namespace, the output file)".into()),
                    ("2", "a bad command line".into()),
                ]),
            ),
            examples(&[
                ("The namespace of a container or of ip netns:", "connectx status -N blue"),
                ("One source address, the 5 tightest destinations:", "connectx status --source 10.0.0.1 --top 5"),
                ("For node_exporter's textfile collector (a systemd timer runs it):", "connectx status --prometheus -o /var/lib/node_exporter/textfile_collector/connectx.prom"),
            ]),
            see_also("connectx-status"),
        ]
        .concat(),
        "connectx-stats" => [
            section("FILES", &files()),
            section(
                "EXIT STATUS",
                &entries(&[
                    ("0", "success".into()),
                    ("1", "no such process, no connectx in it, or its counters could not be read (the line says why)".into()),
                ]),
            ),
            examples(&[
                ("Every process you may see:", "connectx stats"),
                ("One process, every counter:", "connectx stats --all 1234"),
            ]),
            see_also("connectx-stats"),
        ]
        .concat(),
        "connectx-demo" => [
            section(
                "EXIT STATUS",
                &entries(&[("0", "the table was printed".into()), ("1", "no network namespace could be made, or a case failed".into())]),
            ),
            section("FILES", &files()),
            see_also("connectx-demo"),
        ]
        .concat(),
        _ => see_also(page),
    }
}

/// libconnectx(7): the library, for those who use it without the command.
fn library_page() -> String {
    let v = env!("CARGO_PKG_VERSION");
    [
        format!(".TH libconnectx 7 \"\" \"connectx {v}\" \"connectx\"\n"),
        section(
            "NAME",
            "libconnectx \\- preload library that stops programs from running out of ephemeral ports\n",
        ),
        section(
            "SYNOPSIS",
            &format!("LD_PRELOAD={}/libconnectx.so \\fICOMMAND\\fR\n", roff(MULTIARCH_LIB)),
        ),
        section(
            "DESCRIPTION",
            &roff("Preloaded into a dynamically linked program, libconnectx makes its outgoing TCP and UDP \
             connections share local ports per 4-tuple (source address and port, destination \
             address and port): with R ports and D destinations a program holds R x D \
             connections, not R, also when it binds before it connects (bind(ip, 0), a fixed \
             source port). It changes an outcome only where the kernel alone would fail for want \
             of a port, never puts two UDP sockets on one 4-tuple, and leaves servers, other \
             programs and other users' ports alone. Static and setuid programs are not affected \
             (the loader does not preload them).\n"),
        ),
        section("ENVIRONMENT", &library_env()),
        section("FILES", &files()),
        examples(&[
            ("With the command:", "connectx run -- CMD"),
            ("A systemd service (a drop-in):", "Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/connectx/libconnectx.so"),
        ]),
        see_also("libconnectx"),
    ]
    .concat()
}

pub fn man(dir: &Path) -> Res<i32> {
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("_man: {}: {e}", dir.display())))?;
    // No `help` subcommand in the pages (there is no connectx-help(1)).
    let top = super::command().disable_help_subcommand(true);
    write(dir, "connectx", top.clone(), None)?;
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("connectx-{}", sub.get_name());
        // clap_mangen titles the page by the command's name: give it the page's.
        let cmd = sub
            .clone()
            .name(&*name.clone().leak())
            .version(env!("CARGO_PKG_VERSION"));
        let synopsis = (sub.get_name() == "run").then_some(
            "\\fBconnectx run\\fR [\\fIOPTIONS\\fR] \\fB\\-\\-\\fR \\fICMD\\fR [\\fIARGS\\fR...]\n",
        );
        write(dir, &name, cmd, synopsis)?;
    }
    let p = dir.join("libconnectx.7");
    std::fs::write(&p, library_page()).map_err(|e| fail(format!("_man: {}: {e}", p.display())))?;
    Ok(0)
}

/// The completion script for `shell`: public subcommands only (the tools are no clap
/// subcommands), and after `run --` the shell completes a command (zsh and fish from the
/// value hint; bash from a wrapper, clap's bash script completes files there).
pub fn completions(shell: &str) -> Res<i32> {
    let sh: clap_complete::Shell = shell.parse().map_err(|_| {
        super::usage_err(format!(
            "_completions: `{shell}` is not one of bash, zsh, fish, elvish, powershell"
        ))
    })?;
    clap_complete::generate(
        sh,
        &mut super::command(),
        "connectx",
        &mut std::io::stdout(),
    );
    if sh == clap_complete::Shell::Bash {
        print!("{BASH_RUN}");
    }
    Ok(0)
}

/// bash: after `connectx run ... --`, the command and its arguments complete as for the
/// command itself (bash-completion's _command_offset), or as command names without it.
const BASH_RUN: &str = r#"
_connectx_run_command() {
    local i j
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == run ]] || continue
        for ((j = i + 1; j < COMP_CWORD; j++)); do
            [[ ${COMP_WORDS[j]} == -- ]] || continue
            if ((j + 1 < COMP_CWORD)) && declare -F _command_offset >/dev/null; then
                _command_offset $((j + 1))
            elif ((j + 1 == COMP_CWORD)); then
                COMPREPLY=($(compgen -c -- "${COMP_WORDS[COMP_CWORD]}"))
            else
                COMPREPLY=($(compgen -f -- "${COMP_WORDS[COMP_CWORD]}"))
            fi
            return 0
        done
    done
    _connectx "$@"
}
complete -F _connectx_run_command -o bashdefault -o default connectx
"#;

fn write(dir: &Path, name: &str, cmd: clap::Command, synopsis: Option<&str>) -> Res<()> {
    let err = |e: std::io::Error| fail(format!("_man: {name}: {e}"));
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf).map_err(err)?;
    man.render_name_section(&mut buf).map_err(err)?;
    match synopsis {
        Some(s) => buf.extend_from_slice(section("SYNOPSIS", s).as_bytes()),
        None => man.render_synopsis_section(&mut buf).map_err(err)?,
    }
    man.render_description_section(&mut buf).map_err(err)?;
    if cmd.get_arguments().next().is_some() {
        man.render_options_section(&mut buf).map_err(err)?;
    }
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut buf).map_err(err)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(&mut buf).map_err(err)?;
    }
    buf.extend_from_slice(extra(name).as_bytes());
    man.render_version_section(&mut buf).map_err(err)?;
    let p = dir.join(format!("{name}.1"));
    std::fs::write(&p, buf).map_err(|e| fail(format!("_man: {}: {e}", p.display())))
}
