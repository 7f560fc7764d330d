//! Install (issue 13): `scripts/install.sh` under a DESTDIR, then the installed command used as
//! the README says (`connectx run`, `status`, `stats` from the prefix), man pages, completions,
//! a stripped library; the `.deb` of `scripts/deb.sh` installed and removed by dpkg in a private
//! root (`dpkg --root`: the host's package database is never touched); the systemd drop-in's
//! environment, alone, loads the library; the README's Docker and Kubernetes snippets name the
//! installed path. One test: the release build is made once.

mod cxtest;

use cxtest::{Out, cmd, need, repo, run_bounded};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("connectx-inst-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut c = Command::new("bash");
    c.arg(repo().join("scripts").join(name)).args(args);
    c.env_remove("LD_PRELOAD").env_remove("CONNECTX_LIB");
    for (k, v) in env {
        c.env(k, v);
    }
    // A release build (first time, or after a change) on a busy 2-CPU machine.
    run_bounded(c, Duration::from_secs(1500))
}

fn ok(o: Out, what: &str) -> Out {
    assert_eq!(o.code, Some(0), "{what}:\n{o}");
    o
}

const TRIPLET: &str = "x86_64-linux-gnu";

/// The Environment= assignments of a systemd unit file, in order (`Environment=A=1 "B=2 3"`).
fn environment_lines(unit: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in unit.lines().map(str::trim) {
        let Some(rest) = l.strip_prefix("Environment=") else {
            continue;
        };
        // Space-separated assignments, each optionally double-quoted (systemd.exec(5)).
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for ch in rest.chars() {
            match ch {
                '"' => quoted = !quoted,
                ' ' if !quoted => {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        for w in words {
            let (k, v) = w.split_once('=').expect("NAME=value");
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

#[test]
fn install_script_deb_and_unit_environment() {
    if cfg!(not(target_arch = "x86_64")) {
        panic!("this test names the x86_64 multiarch path; adapt TRIPLET for this architecture");
    }
    need("dpkg-deb", "dpkg");
    need("readelf", "binutils");
    need("gzip", "gzip");
    let dir = tmpdir("prefix");
    let dest = dir.join("dest");
    let o = ok(
        script(
            "install.sh",
            &[],
            &[
                ("PREFIX", "/usr/local"),
                ("DESTDIR", dest.to_str().unwrap()),
            ],
        ),
        "scripts/install.sh",
    );
    let root = dest.join("usr/local");
    let bin = root.join("bin/connectx");
    let lib = root.join(format!("lib/{TRIPLET}/connectx/libconnectx.so"));
    for f in [&bin, &lib] {
        assert!(f.is_file(), "{} not installed:\n{o}", f.display());
    }

    // The installed command finds the installed library; a program run by it has it mapped.
    let lib_c = std::fs::canonicalize(&lib).unwrap();
    let r = cmd(&bin, &["run", "--", "sh", "-c", "echo $LD_PRELOAD"], &[]);
    assert_eq!(r.stdout.trim(), lib_c.to_str().unwrap(), "{r}");
    let r = cmd(&bin, &["run", "--", "cat", "/proc/self/maps"], &[]);
    assert!(
        r.stdout.contains(lib_c.to_str().unwrap()),
        "library not mapped:\n{r}"
    );

    // status and stats from the prefix, in a namespace of their own.
    let code = format!(
        "import socket, subprocess; s = socket.socket(); \
         print(subprocess.run(['{}', 'stats', '--json'], capture_output=True, text=True).stdout)",
        bin.display()
    );
    // (The namespace from the build tree's command: the installed one has no lab tools.)
    let r = cmd(
        &cxtest::cx(),
        &[
            "_netns",
            "--",
            "sh",
            "-c",
            &format!(
                "{b} status && {b} run -- python3 -c \"{code}\"",
                b = bin.display()
            ),
        ],
        &[],
    );
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stdout.contains("usable per source address"),
        "status:\n{r}"
    );
    assert!(r.stdout.contains("\"program\": \"python3\""), "stats:\n{r}");

    // The shipped command: no lab tools (issue 18), its version and the library's.
    let r = cmd(&bin, &["_serve", "--tcp", "127.0.0.1:0"], &[]);
    assert_eq!(
        r.code,
        Some(2),
        "the installed command runs a lab tool:\n{r}"
    );
    let r = cmd(&bin, &["--version"], &[]);
    assert!(
        r.stdout
            .contains(&format!("connectx {}", env!("CARGO_PKG_VERSION")))
            && r.stdout.contains(&format!(
                "library {} (libconnectx.so.0, ",
                env!("CARGO_PKG_VERSION")
            )),
        "{r}"
    );

    // Man pages (roff, with the options of --help, and the sections an operator reads).
    let mut pages = std::collections::BTreeMap::new();
    for (page, sec) in [
        ("connectx", 1),
        ("connectx-run", 1),
        ("connectx-status", 1),
        ("connectx-stats", 1),
        ("connectx-demo", 1),
        ("libconnectx", 7),
    ] {
        let p = root.join(format!("share/man/man{sec}/{page}.{sec}.gz"));
        let z = cmd(Path::new("gzip"), &["-dc", p.to_str().unwrap()], &[]);
        assert!(
            z.stdout.contains(&format!(".TH {page} {sec}")),
            "{}:\n{z}",
            p.display()
        );
        pages.insert(format!("{page}({sec})"), z.stdout);
    }
    for sect in [
        "ENVIRONMENT",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            pages["connectx(1)"].contains(&format!(".SH {sect}")),
            "connectx(1) has no {sect}"
        );
    }
    assert!(
        pages["connectx-run(1)"].contains("\\-\\-\\fR \\fICMD"),
        "run's synopsis has no --"
    );
    // Every variable the library reads is in ENVIRONMENT (connectx(1) and libconnectx(7)).
    let vars = library_variables();
    assert!(vars.len() >= 8, "{vars:?}");
    for v in &vars {
        for page in ["connectx(1)", "libconnectx(7)"] {
            let env = pages[page].split(".SH ENVIRONMENT").nth(1).unwrap_or("");
            let env = env.split("\n.SH ").next().unwrap();
            assert!(
                env.contains(&format!("\\fB{}\\fR", v)),
                "{v} missing from the ENVIRONMENT of {page}"
            );
        }
    }
    // No reference to a page of ours that does not exist (there was a connectx-help(1)).
    for (page, text) in &pages {
        for r in text.split("\\fB").skip(1) {
            let Some((name, rest)) = r.split_once("\\fR(") else {
                continue;
            };
            let name = name.replace("\\-", "-");
            if name.contains("connectx") {
                let sec = &rest[..1];
                assert!(
                    pages.contains_key(&format!("{name}({sec})")),
                    "{page} refers to {name}({sec}), which is not installed"
                );
            }
        }
    }
    let z = cmd(
        Path::new("gzip"),
        &[
            "-dc",
            root.join("share/man/man1/connectx-run.1.gz")
                .to_str()
                .unwrap(),
        ],
        &[],
    );
    assert!(z.stdout.contains("\\-\\-log\\-file"), "{z}");
    let bash_c = root.join("share/bash-completion/completions/connectx");
    let r = cmd(
        Path::new("bash"),
        &[
            "-c",
            &format!("source {} && complete -p connectx", bash_c.display()),
        ],
        &[],
    );
    assert!(r.stdout.contains("connectx"), "bash completion:\n{r}");
    // TAB after `connectx ` offers the subcommands and no lab tool; after `run -- ` commands.
    let complete = |words: &str| -> String {
        let r = cmd(
            Path::new("bash"),
            &[
                "-c",
                &format!(
                    "source {} && COMP_WORDS=({words}) && COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)) \
                     && COMP_LINE=\"${{COMP_WORDS[*]}}\" && COMP_POINT=${{#COMP_LINE}} \
                     && $(complete -p connectx | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p') connectx \
                     && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    bash_c.display()
                ),
            ],
            &[],
        );
        r.stdout
    };
    let subs = complete("connectx ''");
    assert!(subs.lines().any(|l| l == "status"), "{subs}");
    assert!(
        !subs.contains("_netns") && !subs.contains("_serve"),
        "{subs}"
    );
    let cmds = complete("connectx run -- gzi");
    assert!(cmds.lines().any(|l| l == "gzip"), "run -- <TAB>: {cmds}");
    for f in [
        "share/zsh/vendor-completions/_connectx",
        "share/fish/vendor_completions.d/connectx.fish",
    ] {
        let t = std::fs::read_to_string(root.join(f)).unwrap_or_default();
        assert!(t.contains("status") && t.contains("stats"), "{f}:\n{t}");
        assert!(!t.contains("_netns") && !t.contains("_serve"), "{f}:\n{t}");
    }
    assert!(!read_help(&bin).contains("_netns"));

    // Shipped stripped of debug info (4.8 MB with it).
    let r = cmd(Path::new("readelf"), &["-S", lib.to_str().unwrap()], &[]);
    assert!(
        !r.stdout.contains(".debug_info"),
        "library has debug info:\n{r}"
    );
    let size = std::fs::metadata(&lib).unwrap().len();
    assert!(size < 1_500_000, "library is {size} bytes");

    // The .deb: same layout under /usr, installed and removed by dpkg in a private root.
    let o = ok(script("deb.sh", &["--no-build"], &[]), "scripts/deb.sh");
    let deb = repo().join(o.stdout.trim());
    let contents = cmd(
        Path::new("dpkg-deb"),
        &["--contents", deb.to_str().unwrap()],
        &[],
    );
    for f in [
        "./usr/bin/connectx".to_string(),
        format!("./usr/lib/{TRIPLET}/connectx/libconnectx.so"),
        "./usr/share/man/man1/connectx-status.1.gz".into(),
        "./usr/share/bash-completion/completions/connectx".into(),
        "./usr/share/doc/connectx/copyright".into(),
        "./usr/share/doc/connectx/changelog.gz".into(),
        format!("./usr/lib/{TRIPLET}/connectx/connectx-tools"),
        "./usr/share/man/man7/libconnectx.7.gz".into(),
    ] {
        assert!(
            contents.stdout.contains(&f),
            "{f} not in the package:\n{contents}"
        );
    }
    let info = cmd(
        Path::new("dpkg-deb"),
        &["--field", deb.to_str().unwrap(), "Depends"],
        &[],
    );
    assert!(
        info.stdout.contains("libc6 (>= 2.") && info.stdout.contains("libgcc-s1"),
        "{info}"
    );
    // lintian, as Debian's archive runs it: no error, no warning.
    let l = cmd(
        &need("lintian", "lintian"),
        &["--fail-on", "error,warning", deb.to_str().unwrap()],
        &[],
    );
    assert_eq!(l.code, Some(0), "lintian:\n{l}");
    assert!(
        !l.stdout
            .lines()
            .any(|x| x.starts_with("E: ") || x.starts_with("W: ")),
        "lintian:\n{l}"
    );
    let droot = dir.join("dpkg-root");
    let admin = droot.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let mut a = vec!["--root", droot.to_str().unwrap(), "--log=/dev/null"];
        a.extend_from_slice(args);
        cmd(Path::new("dpkg"), &a, &[])
    };
    // --force-depends: the private root has no libc6 package (the host's glibc runs it).
    let i = dpkg(&["--force-depends", "-i", deb.to_str().unwrap()]);
    assert_eq!(i.code, Some(0), "dpkg -i:\n{i}");
    let s = dpkg(&["-s", "connectx"]);
    assert!(s.stdout.contains("Status: install ok installed"), "{s}");
    let ibin = droot.join("usr/bin/connectx");
    let ilib = droot.join(format!("usr/lib/{TRIPLET}/connectx/libconnectx.so"));
    let r = cmd(&ibin, &["run", "--", "cat", "/proc/self/maps"], &[]);
    assert!(
        r.stdout
            .contains(std::fs::canonicalize(&ilib).unwrap().to_str().unwrap()),
        "from the package, the library is not mapped:\n{r}"
    );

    // The systemd drop-in: its Environment= lines, and nothing else but the PATH systemd
    // gives a unit, load the library the package installed (re-rooted in the private root).
    let unit = std::fs::read_to_string(repo().join("docs/systemd/connectx.conf")).unwrap();
    let env = environment_lines(&unit);
    let preload = env
        .iter()
        .find(|(k, _)| k == "LD_PRELOAD")
        .map(|(_, v)| v.clone())
        .expect("the drop-in sets LD_PRELOAD");
    assert_eq!(
        preload,
        format!("/usr/lib/{TRIPLET}/connectx/libconnectx.so")
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Environment=LD_PRELOAD={preload}")),
        "the README's drop-in differs from docs/systemd/connectx.conf"
    );
    let mut c = Command::new("/usr/bin/env");
    c.arg("-i")
        .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in &env {
        let v = match k.as_str() {
            "LD_PRELOAD" => droot.join(v.trim_start_matches('/')).display().to_string(),
            _ => v.clone(),
        };
        c.arg(format!("{k}={v}"));
    }
    c.args(["cat", "/proc/self/maps"]);
    let r = run_bounded(c, Duration::from_secs(30));
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stdout
            .contains(std::fs::canonicalize(&ilib).unwrap().to_str().unwrap()),
        "the drop-in's environment does not load the library:\n{r}"
    );
    assert!(
        r.stderr.is_empty(),
        "nothing logged at info for a program without sockets:\n{r}"
    );

    // The Docker and Kubernetes snippets name the same path and the package of scripts/deb.sh.
    let deb_name = deb.file_name().unwrap().to_str().unwrap();
    assert!(
        readme.contains(&format!("ENV LD_PRELOAD={preload}")),
        "Dockerfile snippet"
    );
    assert!(
        readme.contains(&format!("dpkg -i /tmp/{deb_name}")),
        "Dockerfile snippet: {deb_name}"
    );
    assert!(
        readme.contains(&format!("\"cp\", \"{preload}\"")),
        "Kubernetes snippet"
    );

    let rm = dpkg(&["-r", "connectx"]);
    assert_eq!(rm.code, Some(0), "dpkg -r:\n{rm}");
    let left: Vec<PathBuf> = walk(&droot.join("usr"));
    assert!(left.is_empty(), "files left after dpkg -r: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every CONNECTX_* variable the library reads: the string literals of its source.
fn library_variables() -> Vec<String> {
    let mut vars = std::collections::BTreeSet::new();
    // The core (src/) and the preload crate (preload/src/).
    let mut dirs = vec![repo().join("src"), repo().join("preload/src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let t = std::fs::read_to_string(&p).unwrap();
                for part in t.split("\"CONNECTX").skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    if part[name.len()..].starts_with('"') {
                        vars.insert(format!("CONNECTX{name}"));
                    }
                }
            }
        }
    }
    vars.into_iter().collect()
}

fn read_help(bin: &Path) -> String {
    cmd(bin, &["--help"], &[]).stdout
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `rust-version` is declared, covers every dependency's own (cargo metadata), and the README's
/// prerequisites say it.
#[test]
fn rust_version_is_declared_and_covers_the_dependencies() {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    // This machine's target only (the lock file also names other platforms' crates).
    let rustc = cmd(Path::new("rustc"), &["-vV"], &[]);
    let host = rustc
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("rustc -vV:\n{rustc}"))
        .to_string();
    let o = cmd(
        Path::new(cargo),
        &[
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--filter-platform",
            &host,
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "cargo metadata:\n{o}");
    let code = r#"
import json, sys
m = json.loads(sys.stdin.read())
v = lambda s: tuple(int(x) for x in s.split("."))
ours = {p["name"]: p["rust_version"] for p in m["packages"] if p["name"] in ("connectx", "connectx-cli")}
deps = max((v(p["rust_version"]), p["name"]) for p in m["packages"] if p.get("rust_version"))
print(ours["connectx"], ours["connectx-cli"], v(ours["connectx"]) >= deps[0], deps[1])
"#;
    let mut c = Command::new(need("python3", "python3"));
    c.args(["-c", code]).stdin(std::process::Stdio::piped());
    let mut child = c.stdout(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(o.stdout.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    let w: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(w.len(), 4, "{got}");
    assert_eq!(w[0], w[1], "both crates declare the same rust-version");
    assert_eq!(w[2], "True", "{} needs a newer Rust than {}", w[3], w[0]);
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("**Rust {} or newer**", w[0])),
        "README prerequisites must name Rust {}",
        w[0]
    );
}
