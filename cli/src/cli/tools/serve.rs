//! `connectx _serve`: small bounded servers for the demo and the tests.
//!
//!   --tcp A:P     TCP echo (bind → getsockname → listen: with port 0 this is
//!                 the "server reads its port before listen" recipe)
//!   --udp A:P     UDP echo: every datagram goes back to its sender
//!   --http A:P    minimal HTTP/1.1 keep-alive server (the client closes first)
//!   --bind-only A:P  TCP socket bound but never listening (holds the port)
//!   --seconds N   exit after N seconds (default 30, at most 3600)
//!   --bg          go to the background once bound
//! Prints `ready tcp=A:P ... pid=N` once every socket is bound.

use super::args::Args;
use super::sock::{Sock, family_of};
use super::{Res, fail, usage_err};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

enum Kind {
    Listen { http: bool },
    Udp,
    Conn { http: bool, buf: Vec<u8> },
    Held,
}

struct Ent {
    s: Sock,
    kind: Kind,
}

const MAX_CONNS: usize = 20_000;
const HTTP_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n";

pub fn main(raw: Vec<std::ffi::OsString>) -> Res<i32> {
    let mut a = Args::new(raw);
    let mut want: Vec<(String, SocketAddr)> = Vec::new();
    let mut seconds: u64 = 30;
    let mut bg = false;
    while let Some(f) = a.next_flag()? {
        match f.as_str() {
            "--tcp" | "--udp" | "--http" | "--bind-only" => {
                let addr = a.parsed::<SocketAddr>("an address like 127.0.0.1:7 or [::1]:7")?;
                want.push((f[2..].to_string(), addr));
            }
            "--seconds" => seconds = a.parsed::<u64>("a number of seconds")?.min(3600),
            "--bg" => bg = true,
            _ => return Err(a.unknown(&f, "_serve")),
        }
    }
    if !a.rest().is_empty() {
        return Err(usage_err("_serve: unexpected arguments"));
    }
    if want.is_empty() {
        return Err(usage_err(
            "_serve: nothing to serve (give --tcp, --udp, --http or --bind-only)",
        ));
    }
    let mut ents = Vec::new();
    let mut line = String::from("ready");
    for (what, addr) in &want {
        let (ent, local) = open(what, addr).map_err(|e| {
            fail(format!(
                "_serve: --{what} {addr}: {} ({})",
                super::ioerr(&e),
                super::sock::errno_name(&e)
            ))
        })?;
        line.push_str(&format!(" {what}={local}"));
        ents.push(ent);
    }
    if bg {
        match super::daemon::background(&line) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {}
            Err(e) => return Err(fail(format!("_serve: fork: {e}"))),
        }
    } else {
        println!("{line} pid={}", std::process::id());
    }
    serve(ents, Instant::now() + Duration::from_secs(seconds));
    Ok(0)
}

fn open(what: &str, addr: &SocketAddr) -> std::io::Result<(Ent, SocketAddr)> {
    let ty = if what == "udp" {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    let s = Sock::new(family_of(addr), ty)?;
    s.bind(addr)?;
    // Read the port before listen: servers that bind port 0 do exactly this.
    let local = s.local_addr()?;
    let kind = match what {
        "tcp" | "http" => {
            s.listen(4096)?;
            Kind::Listen {
                http: what == "http",
            }
        }
        "udp" => Kind::Udp,
        _ => Kind::Held,
    };
    s.set_nonblocking()?;
    Ok((Ent { s, kind }, local))
}

fn serve(mut ents: Vec<Ent>, deadline: Instant) {
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let wait = (deadline - now).as_millis().min(1000) as i32;
        let mut pfds: Vec<libc::pollfd> = ents
            .iter()
            .map(|e| libc::pollfd {
                fd: e.s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: pfds is a valid array of pollfd.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait) };
        if n <= 0 {
            continue;
        }
        let mut new = Vec::new();
        let mut dead = Vec::new();
        for (i, p) in pfds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            let base = ents.len();
            let e = &mut ents[i];
            match &mut e.kind {
                Kind::Listen { http } => {
                    while base + new.len() < MAX_CONNS {
                        match e.s.accept() {
                            Ok(c) => new.push(Ent {
                                s: c,
                                kind: Kind::Conn {
                                    http: *http,
                                    buf: Vec::new(),
                                },
                            }),
                            Err(_) => break,
                        }
                    }
                }
                Kind::Udp => {
                    // Bounded batch per wakeup so one busy socket cannot starve others.
                    for _ in 0..256 {
                        match e.s.recv_from(&mut buf) {
                            Ok((len, ss, sl)) => {
                                let _ = e.s.send_to_raw(&buf[..len], &ss, sl);
                            }
                            Err(_) => break,
                        }
                    }
                }
                Kind::Conn { http, buf: req } => match e.s.recv(&mut buf) {
                    Ok(0) | Err(_) => dead.push(i),
                    Ok(len) if !*http => {
                        let _ = e.s.send(&buf[..len]);
                    }
                    Ok(len) => {
                        req.extend_from_slice(&buf[..len]);
                        while let Some(end) = find(req, b"\r\n\r\n") {
                            req.drain(..end + 4);
                            let _ = e.s.send(HTTP_REPLY);
                        }
                        if req.len() > 65536 {
                            dead.push(i);
                        }
                    }
                },
                Kind::Held => {}
            }
        }
        for i in dead.into_iter().rev() {
            ents.swap_remove(i);
        }
        ents.extend(new);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
