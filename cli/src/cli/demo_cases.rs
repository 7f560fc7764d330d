//! The demo's measurements, each run inside its own fresh namespace by
//! `connectx _demo-case CASE without|with`. Each returns (figure, detail).

use super::demo::{Cx, field};
use super::{Res, fail};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

const DSTS: &str = "127.0.0.2:7,127.0.0.3:7,127.0.0.4:7";

/// Kills what a case started, also on early return.
#[derive(Default)]
struct Cleanup {
    pids: Vec<i32>,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.pids {
            // SAFETY: signalling a pid we started.
            unsafe { libc::kill(*p, libc::SIGTERM) };
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(cx: &Cx, case: &str, with: bool) -> Res<(String, String)> {
    let mut cl = Cleanup::default();
    match case {
        "probe" => Ok(("ok".into(), String::new())),
        "tcp-bind0" => {
            serve(cx, &mut cl, "--tcp", DSTS)?;
            client(
                cx,
                with,
                &[
                    "--proto", "tcp", "--mode", "bind0", "--dst", DSTS, "--count", "31",
                ],
            )
        }
        "tcp-bind0-supervised" => {
            // `connectx run --supervise`: the seccomp supervisor that reaches Go and static
            // programs (docs/supervisor.md), shown on the same client.
            serve(cx, &mut cl, "--tcp", DSTS)?;
            let exe = cx.exe.to_string_lossy().into_owned();
            let args = [
                "_client", "--proto", "tcp", "--mode", "bind0", "--dst", DSTS, "--count", "31",
            ];
            if !with {
                return client(cx, false, &args[1..]);
            }
            let mut all = vec!["run", "--supervise", "--", &exe];
            all.extend(args);
            client_cmd(cx.cmd(&all, false))
        }
        "tcp-port" => {
            serve(cx, &mut cl, "--tcp", DSTS)?;
            // The fourth socket goes to the first destination again.
            let d = format!("{DSTS},127.0.0.2:7");
            client(
                cx,
                with,
                &[
                    "--proto",
                    "tcp",
                    "--mode",
                    "port:5000",
                    "--dst",
                    &d,
                    "--count",
                    "4",
                ],
            )
        }
        "udp-connect" | "udp-bind0" => {
            serve(cx, &mut cl, "--udp", DSTS)?;
            let mode = if case == "udp-connect" {
                "plain"
            } else {
                "bind0"
            };
            client(
                cx,
                with,
                &[
                    "--proto", "udp", "--mode", mode, "--dst", DSTS, "--count", "31", "--echo",
                ],
            )
        }
        "curl" => curl(cx, &mut cl, with),
        "nc" => nc(cx, &mut cl, with),
        "dig" => dig(cx, &mut cl, with),
        _ => Err(fail(format!("_demo-case: unknown case `{case}`"))),
    }
}

fn out_text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Start `_serve` in the background with one listener per address.
fn serve(cx: &Cx, cl: &mut Cleanup, kind: &str, addrs: &str) -> Res<()> {
    let mut args = vec!["_serve"];
    for a in addrs.split(',') {
        args.extend([kind, a]);
    }
    args.extend(["--seconds", "60", "--bg"]);
    start_bg(cx, cl, &args, false)
}

fn start_bg(cx: &Cx, cl: &mut Cleanup, args: &[&str], preload: bool) -> Res<()> {
    let o = cx
        .cmd(args, preload)
        .output()
        .map_err(|e| fail(format!("cannot start {}: {e}", args[0])))?;
    let (out, err) = out_text(&o);
    match out
        .lines()
        .last()
        .and_then(|l| field(l, "pid"))
        .and_then(|p| p.parse().ok())
    {
        Some(pid) => {
            cl.pids.push(pid);
            Ok(())
        }
        None => Err(fail(format!("{} failed: {}", args[0], err.trim()))),
    }
}

fn client(cx: &Cx, with: bool, args: &[&str]) -> Res<(String, String)> {
    let mut all = vec!["_client"];
    all.extend(args);
    client_cmd(cx.cmd(&all, with))
}

fn client_cmd(mut c: std::process::Command) -> Res<(String, String)> {
    let o = c
        .output()
        .map_err(|e| fail(format!("cannot run _client: {e}")))?;
    let (out, err) = out_text(&o);
    let Some(line) = out.lines().find(|l| l.starts_with("opened=")) else {
        return Ok(("error".into(), err.trim().to_string()));
    };
    let opened = field(line, "opened").unwrap_or("?").to_string();
    let mut detail = Vec::new();
    if let (Some(step), Some(errno)) = (field(line, "failed_step"), field(line, "errno"))
        && step != "-"
    {
        detail.push(format!("then {step} {errno}"));
    }
    if let Some(bad) = field(line, "echo_bad").filter(|b| *b != "0") {
        detail.push(format!("{bad} got a wrong reply"));
    }
    Ok((opened, detail.join(", ")))
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

fn curl(cx: &Cx, cl: &mut Cleanup, with: bool) -> Res<(String, String)> {
    serve(cx, cl, "--http", "127.0.0.2:8080")?;
    let mut ok = 0;
    let mut why = String::new();
    for _ in 0..2 {
        let args = [
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "--local-port",
            "5000",
            "http://127.0.0.2:8080/",
        ];
        let o = cx
            .tool("curl", &args, with)
            .output()
            .map_err(|e| fail(format!("cannot run curl: {e}")))?;
        if o.status.success() {
            ok += 1;
        } else if why.is_empty() {
            why = first_line(&out_text(&o).1);
        }
    }
    Ok((format!("{ok}/2"), why))
}

fn nc(cx: &Cx, cl: &mut Cleanup, with: bool) -> Res<(String, String)> {
    serve(cx, cl, "--tcp", "127.0.0.2:7,127.0.0.3:7")?;
    // Another program (no library) holds every port towards 127.0.0.2.
    start_bg(
        cx,
        cl,
        &[
            "_client",
            "--proto",
            "tcp",
            "--dst",
            "127.0.0.2:7",
            "--count",
            "10",
            "--hold",
            "60",
            "--bg",
        ],
        false,
    )?;
    let args = ["-z", "-w", "3", "-s", "127.0.0.1", "127.0.0.3", "7"];
    let o = cx
        .tool("nc", &args, with)
        .output()
        .map_err(|e| fail(format!("cannot run nc: {e}")))?;
    if o.status.success() {
        Ok(("ok".into(), String::new()))
    } else {
        Ok(("fail".into(), first_line(&out_text(&o).1)))
    }
}

fn dig(cx: &Cx, cl: &mut Cleanup, with: bool) -> Res<(String, String)> {
    let dnsmasq = cx
        .tool(
            "dnsmasq",
            &[
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--address=/example.com/192.0.2.1",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--group=root",
                "--pid-file",
            ],
            false,
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run dnsmasq: {e}")))?;
    cl.children.push(dnsmasq);
    if !wait_udp_listener("0100007F:0035", Duration::from_secs(5)) {
        // In an unprivileged user namespace dnsmasq cannot change its group.
        return Ok((
            "skip".into(),
            "dnsmasq could not start here (it needs real root)".into(),
        ));
    }
    serve(cx, cl, "--udp", "127.0.0.2:7,127.0.0.3:7")?;
    // A connected-UDP service holding every port, under the library when dig is (the same
    // user's connectx processes share ports; dig without it could share with a connectx
    // service too, through its own SO_REUSEPORT).
    let fill = [
        "_client",
        "--proto",
        "udp",
        "--mode",
        "bind0",
        "--dst",
        "127.0.0.2:7,127.0.0.3:7",
        "--count",
        "20",
    ];
    let mut args = fill.to_vec();
    args.extend(["--keep-going", "--hold", "60", "--bg"]);
    start_bg(cx, cl, &args, with)?;
    let q = [
        "@127.0.0.1",
        "-b",
        "127.0.0.1",
        "example.com",
        "+time=2",
        "+tries=1",
    ];
    let o = cx
        .tool("dig", &q, with)
        .output()
        .map_err(|e| fail(format!("cannot run dig: {e}")))?;
    let (out, err) = out_text(&o);
    if o.status.success() && out.contains("192.0.2.1") {
        return Ok(("ok".into(), String::new()));
    }
    let why = if out.contains("address in use") {
        "address in use".to_string()
    } else {
        first_line(&(out + &err))
    };
    Ok(("fail".into(), why))
}

/// Bounded wait for a UDP socket bound to `local` (hex as in /proc/net/udp).
pub fn wait_udp_listener(local: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(t) = std::fs::read_to_string("/proc/net/udp")
            && t.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(local))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
