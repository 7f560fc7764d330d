//! A tiny command-line reader: `--flag value`, `--flag=value`, `--` ends
//! the options. Every error is one line naming the offending word.

use super::{Res, usage_err};
use std::ffi::OsString;
use std::str::FromStr;

pub struct Args {
    items: Vec<OsString>,
    pos: usize,
    /// Value given inline as `--flag=value`, waiting for `value()`.
    pending: Option<String>,
    /// Name of the flag the pending value belongs to.
    flag: String,
}

impl Args {
    pub fn new(items: Vec<OsString>) -> Args {
        Args {
            items,
            pos: 0,
            pending: None,
            flag: String::new(),
        }
    }

    /// The next option word, or None at the end or after `--` (consumed).
    /// Words that do not start with `-` also end the options (left in place).
    pub fn next_flag(&mut self) -> Res<Option<String>> {
        if let Some(v) = self.pending.take() {
            return Err(usage_err(format!(
                "option {} takes no value (got `{v}`)",
                self.flag
            )));
        }
        let Some(item) = self.items.get(self.pos) else {
            return Ok(None);
        };
        let Some(s) = item.to_str() else {
            return Err(usage_err(format!("unexpected argument {item:?}")));
        };
        if s == "--" {
            self.pos += 1;
            return Ok(None);
        }
        if !s.starts_with('-') || s == "-" {
            return Ok(None);
        }
        self.pos += 1;
        let (name, inline) = match s.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (s.to_string(), None),
        };
        self.flag = name.clone();
        self.pending = inline;
        Ok(Some(name))
    }

    /// The value of the current flag.
    pub fn value(&mut self) -> Res<String> {
        if let Some(v) = self.pending.take() {
            return Ok(v);
        }
        let flag = self.flag.clone();
        let Some(item) = self.items.get(self.pos) else {
            return Err(usage_err(format!("option {flag} needs a value")));
        };
        let Some(s) = item.to_str() else {
            return Err(usage_err(format!(
                "option {flag}: value {item:?} is not valid text"
            )));
        };
        self.pos += 1;
        Ok(s.to_string())
    }

    /// The value of the current flag parsed as T, with `what` describing
    /// what is accepted.
    pub fn parsed<T: FromStr>(&mut self, what: &str) -> Res<T> {
        let v = self.value()?;
        v.parse()
            .map_err(|_| usage_err(format!("option {}: `{v}` is not {what}", self.flag)))
    }

    /// Everything not consumed yet (the command after `--`).
    pub fn rest(&mut self) -> Vec<OsString> {
        let r = self.items[self.pos..].to_vec();
        self.pos = self.items.len();
        r
    }

    pub fn unknown(&self, name: &str, cmd: &str) -> super::Fail {
        usage_err(format!(
            "{cmd}: unknown option {name} (try `connectx --help`)"
        ))
    }
}
