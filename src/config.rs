//! Configuration from the environment, read once at load (SPEC "Configuration").
//!
//! Parsing is plain Rust over byte strings so unit tests can call it without LD_PRELOAD, and so
//! the load-time path needs no allocation (getenv returns borrowed bytes).

use std::sync::atomic::{AtomicU32, Ordering};

const VERSION_TEXT: &str = concat!("CONNECTX_LIBRARY_VERSION=", env!("CARGO_PKG_VERSION"), "\0");

const fn version_bytes<const N: usize>() -> [u8; N] {
    let s = VERSION_TEXT.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = s[i];
        i += 1;
    }
    out
}

/// The library's version, as text in the file: `connectx --version` finds it without loading
/// the library (a load would run our constructor in the command). Also a C symbol for tools
/// that dlopen it: `CONNECTX_LIBRARY_VERSION=0.1.0`.
#[used]
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static connectx_version: [u8; VERSION_TEXT.len()] = version_bytes();

#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn name(self) -> &'static str {
        ["off", "error", "warn", "info", "debug"][self as usize]
    }
}

/// What getsockname answers between bind(ip, 0) and connect (see README).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GetsocknameMode {
    /// Give the socket its real port now, exactly as without connectx (never breaks a server).
    Bind,
    /// Answer port 0 and keep the deferral (for clients that only log their port).
    Port0,
}

/// What a bind does when the kernel finds no port for it (see README).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BindBusy {
    /// It succeeds: a fixed port is shared with the connections holding it (one per
    /// destination), a UDP bind(ip, 0) gets its port at connect.
    Share,
    /// The kernel's EADDRINUSE, for programs that handle it themselves (walk a port range,
    /// fall back to a socket they have). TCP bind(ip, 0) is still deferred to connect.
    Kernel,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    pub enabled: bool,
    pub tcp: bool,
    pub udp: bool,
    pub log: Level,
    pub getsockname: GetsocknameMode,
    pub bind_busy: BindBusy,
}

/// In words, for the line logged at load.
impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "connectx {}, TCP {}, UDP {}, log level {}, getsockname {}",
            on(self.enabled),
            on(self.tcp),
            on(self.udp),
            self.log.name(),
            match self.getsockname {
                GetsocknameMode::Bind => "bind",
                GetsocknameMode::Port0 => "port0",
            }
        )
    }
}

pub const DEFAULT: Config = Config {
    enabled: true,
    tcp: true,
    udp: true,
    log: Level::Warn,
    getsockname: GetsocknameMode::Bind,
    bind_busy: BindBusy::Share,
};

/// A bad value: which variable, what it held, and what is accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct BadValue<'a> {
    pub var: &'static str,
    pub value: &'a [u8],
    pub accepted: &'static str,
    pub default: &'static str,
}

fn switch(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"on" | b"true" | b"yes" => Some(true),
        b"0" | b"off" | b"false" | b"no" => Some(false),
        _ => None,
    }
}

fn level(v: &[u8]) -> Option<Level> {
    Some(match v {
        b"off" | b"none" => Level::Off,
        b"error" => Level::Error,
        b"warn" | b"warning" => Level::Warn,
        b"info" => Level::Info,
        b"debug" => Level::Debug,
        _ => return None,
    })
}

fn getsockname_mode(v: &[u8]) -> Option<GetsocknameMode> {
    match v {
        b"bind" => Some(GetsocknameMode::Bind),
        b"port0" => Some(GetsocknameMode::Port0),
        _ => None,
    }
}

const SWITCH: &str = "1 or 0 (also on/off, true/false, yes/no)";

/// Builds the configuration from `get(name)`; every bad value is passed to `bad` and replaced by
/// its default. Empty values count as unset.
pub fn parse<'a>(
    get: impl Fn(&'static str) -> Option<&'a [u8]>,
    mut bad: impl FnMut(BadValue<'a>),
) -> Config {
    let mut c = DEFAULT;
    let mut flag = |var: &'static str, dflt: bool, slot: &mut bool| {
        if let Some(v) = get(var).filter(|v| !v.is_empty()) {
            match switch(v) {
                Some(b) => *slot = b,
                None => bad(BadValue {
                    var,
                    value: v,
                    accepted: SWITCH,
                    default: if dflt { "1" } else { "0" },
                }),
            }
        }
    };
    flag("CONNECTX", true, &mut c.enabled);
    flag("CONNECTX_TCP", true, &mut c.tcp);
    flag("CONNECTX_UDP", true, &mut c.udp);
    if let Some(v) = get("CONNECTX_LOG").filter(|v| !v.is_empty()) {
        match level(v) {
            Some(l) => c.log = l,
            None => bad(BadValue {
                var: "CONNECTX_LOG",
                value: v,
                accepted: "off, error, warn, info, debug",
                default: "warn",
            }),
        }
    }
    if let Some(v) = get("CONNECTX_GETSOCKNAME").filter(|v| !v.is_empty()) {
        match getsockname_mode(v) {
            Some(m) => c.getsockname = m,
            None => bad(BadValue {
                var: "CONNECTX_GETSOCKNAME",
                value: v,
                accepted: "bind, port0",
                default: "bind",
            }),
        }
    }
    if let Some(v) = get("CONNECTX_BIND_BUSY").filter(|v| !v.is_empty()) {
        match v {
            b"share" => c.bind_busy = BindBusy::Share,
            b"kernel" => c.bind_busy = BindBusy::Kernel,
            _ => bad(BadValue {
                var: "CONNECTX_BIND_BUSY",
                value: v,
                accepted: "share, kernel",
                default: "share",
            }),
        }
    }
    c
}

// The configuration in force, packed into one word so hooks read it with a single atomic load.
static CURRENT: AtomicU32 = AtomicU32::new(0);
const SET: u32 = 1 << 31;

pub fn store(c: Config) {
    let bits = SET
        | c.enabled as u32
        | (c.tcp as u32) << 1
        | (c.udp as u32) << 2
        | ((c.getsockname == GetsocknameMode::Port0) as u32) << 3
        | (c.log as u32) << 4
        | ((c.bind_busy == BindBusy::Kernel) as u32) << 7;
    CURRENT.store(bits, Ordering::Release);
}

/// The log level in force (0 = off, also before the configuration is read).
#[inline]
pub fn log_level() -> u32 {
    (CURRENT.load(Ordering::Relaxed) >> 4) & 7
}

/// The configuration, or None before it has been read (the library then stays out of the way).
pub fn get() -> Option<Config> {
    let b = CURRENT.load(Ordering::Acquire);
    if b & SET == 0 {
        return None;
    }
    Some(Config {
        enabled: b & 1 != 0,
        tcp: b & 2 != 0,
        udp: b & 4 != 0,
        getsockname: if b & 8 != 0 {
            GetsocknameMode::Port0
        } else {
            GetsocknameMode::Bind
        },
        bind_busy: if b & (1 << 7) != 0 {
            BindBusy::Kernel
        } else {
            BindBusy::Share
        },
        log: match (b >> 4) & 7 {
            0 => Level::Off,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            _ => Level::Debug,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'static str, &'a str)]) -> impl Fn(&'static str) -> Option<&'a [u8]> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let mut bad = vec![];
        assert_eq!(parse(env(&[]), |b| bad.push(b.var)), DEFAULT);
        assert!(bad.is_empty());
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            env(&[
                ("CONNECTX", "1"),
                ("CONNECTX_TCP", "0"),
                ("CONNECTX_LOG", "debug"),
                ("CONNECTX_GETSOCKNAME", "port0"),
                ("CONNECTX_BIND_BUSY", "kernel"),
            ]),
            |_| panic!("no bad value expected"),
        );
        assert!(c.enabled && !c.tcp && c.udp);
        assert_eq!(c.log, Level::Debug);
        assert_eq!(c.getsockname, GetsocknameMode::Port0);
        assert_eq!(c.bind_busy, BindBusy::Kernel);
    }

    #[test]
    fn bad_values_are_named_and_replaced_by_the_default() {
        let mut bad = vec![];
        let c = parse(
            env(&[("CONNECTX_UDP", "maybe"), ("CONNECTX_LOG", "loud")]),
            |b| bad.push(b),
        );
        assert_eq!(c, DEFAULT);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].var, "CONNECTX_UDP");
        assert_eq!(bad[0].value, b"maybe");
        assert_eq!(bad[1].accepted, "off, error, warn, info, debug");
    }

    #[test]
    fn config_in_words() {
        assert_eq!(
            DEFAULT.to_string(),
            "connectx on, TCP on, UDP on, log level warn, getsockname bind"
        );
    }

    #[test]
    fn packed_config_round_trips() {
        let c = Config {
            enabled: true,
            tcp: false,
            udp: true,
            log: Level::Info,
            getsockname: GetsocknameMode::Port0,
            bind_busy: BindBusy::Kernel,
        };
        store(c);
        assert_eq!(get(), Some(c));
    }
}
