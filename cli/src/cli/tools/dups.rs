//! `connectx _dups`: counts, in the current network namespace, connected
//! sockets and duplicate 4-tuples (two sockets with the same local and remote
//! address and port — for UDP only the newest would receive, silently).
//! Prints: udp_connected=N udp_dups=N tcp_connected=N tcp_dups=N
//! where *_dups is the number of sockets beyond the first on each 4-tuple.

use super::{Res, fail, usage_err};
use std::collections::HashMap;

/// /proc/net state column: TCP_ESTABLISHED (also "connected" for UDP).
const ESTABLISHED: &str = "01";
const TCP_LISTEN: &str = "0A";
const TCP_TIME_WAIT: &str = "06";

pub fn main(raw: Vec<std::ffi::OsString>) -> Res<i32> {
    if !raw.is_empty() {
        return Err(usage_err("_dups takes no arguments"));
    }
    let (uc, ud) = count(&["udp", "udp6"], true)?;
    let (tc, td) = count(&["tcp", "tcp6"], false)?;
    println!("udp_connected={uc} udp_dups={ud} tcp_connected={tc} tcp_dups={td}");
    Ok(0)
}

fn count(files: &[&str], udp: bool) -> Res<(usize, usize)> {
    let mut tuples: HashMap<(String, String), usize> = HashMap::new();
    for f in files {
        let path = format!("/proc/net/{f}");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // No IPv6 in this kernel: nothing to count there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && f.ends_with('6') => continue,
            Err(e) => return Err(fail(format!("_dups: reading {path}: {e}"))),
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 {
                continue;
            }
            let (local, remote, st) = (cols[1], cols[2], cols[3]);
            let connected = if udp {
                st == ESTABLISHED
            } else {
                st != TCP_LISTEN && st != TCP_TIME_WAIT
            };
            if connected {
                *tuples
                    .entry((local.to_string(), remote.to_string()))
                    .or_default() += 1;
            }
        }
    }
    let total = tuples.values().sum();
    let dups = tuples.values().map(|n| n - 1).sum();
    Ok((total, dups))
}
