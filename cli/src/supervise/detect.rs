//! Which programs the preload cannot reach (docs/supervisor.md): a static executable (no ELF
//! interpreter: nothing is preloaded) and every Go program, static or cgo (its runtime makes
//! socket calls as raw system calls, so a preload loads and does nothing). A Go binary carries
//! a `.go.buildinfo` section.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Why `p` needs the supervisor, or None (a dynamic non-Go program, a script, not ELF).
pub fn needs_supervisor(p: &Path) -> Option<&'static str> {
    let mut f = File::open(p).ok()?;
    let mut head = vec![0u8; 64];
    f.read_exact(&mut head).ok()?;
    let e = parse_header(&head)?;
    if has_section(&mut f, &e, b".go.buildinfo").unwrap_or(false) {
        return Some("is a Go program (its runtime makes raw system calls)");
    }
    (!has_interp(&mut f, &e)?).then_some("is statically linked (no ELF interpreter)")
}

struct Header {
    little: bool,
    wide: bool,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
    shstrndx: u64,
}

fn int(b: &[u8], off: usize, n: usize, little: bool) -> Option<u64> {
    let s = b.get(off..off + n)?;
    let mut v = 0u64;
    for i in 0..n {
        let byte = if little { s[n - 1 - i] } else { s[i] };
        v = v << 8 | byte as u64;
    }
    Some(v)
}

fn parse_header(b: &[u8]) -> Option<Header> {
    if b.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = b[4] == 2;
    let little = b[5] == 1;
    let (phoff, psz, pnum) = if wide {
        (int(b, 0x20, 8, little)?, 0x36, 0x38)
    } else {
        (int(b, 0x1c, 4, little)?, 0x2a, 0x2c)
    };
    let (shoff, sz, num, idx) = if wide {
        (int(b, 0x28, 8, little)?, 0x3a, 0x3c, 0x3e)
    } else {
        (int(b, 0x20, 4, little)?, 0x2e, 0x30, 0x32)
    };
    Some(Header {
        little,
        wide,
        phoff,
        phentsize: int(b, psz, 2, little)?,
        phnum: int(b, pnum, 2, little)?,
        shoff,
        shentsize: int(b, sz, 2, little)?,
        shnum: int(b, num, 2, little)?,
        shstrndx: int(b, idx, 2, little)?,
    })
}

/// A PT_INTERP program header: the kernel starts the dynamic loader, which preloads.
fn has_interp(f: &mut File, e: &Header) -> Option<bool> {
    if e.phnum > 4096 || e.phentsize < 4 {
        return Some(false);
    }
    let mut tab = vec![0u8; (e.phentsize * e.phnum) as usize];
    f.seek(SeekFrom::Start(e.phoff)).ok()?;
    f.read_exact(&mut tab).ok()?;
    Some(
        tab.chunks(e.phentsize as usize)
            .any(|h| int(h, 0, 4, e.little) == Some(3)),
    )
}

/// Reads the section headers and the section-name table (bounded: at most 4096 sections and a
/// 1 MiB name table).
fn has_section(f: &mut File, e: &Header, name: &[u8]) -> Option<bool> {
    if e.shoff == 0 || e.shnum == 0 || e.shnum > 4096 || e.shstrndx >= e.shnum {
        return Some(false);
    }
    let mut tab = vec![0u8; (e.shentsize * e.shnum) as usize];
    f.seek(SeekFrom::Start(e.shoff)).ok()?;
    f.read_exact(&mut tab).ok()?;
    let sh = |i: u64| &tab[(i * e.shentsize) as usize..((i + 1) * e.shentsize) as usize];
    // (name offset, file offset, size) of section i.
    let fields = |s: &[u8]| -> Option<(u64, u64, u64)> {
        if e.wide {
            Some((
                int(s, 0, 4, e.little)?,
                int(s, 0x18, 8, e.little)?,
                int(s, 0x20, 8, e.little)?,
            ))
        } else {
            Some((
                int(s, 0, 4, e.little)?,
                int(s, 0x10, 4, e.little)?,
                int(s, 0x14, 4, e.little)?,
            ))
        }
    };
    let (_, stroff, strsize) = fields(sh(e.shstrndx))?;
    if strsize > 1 << 20 {
        return Some(false);
    }
    let mut names = vec![0u8; strsize as usize];
    f.seek(SeekFrom::Start(stroff)).ok()?;
    f.read_exact(&mut names).ok()?;
    Some((0..e.shnum).any(|i| {
        fields(sh(i)).is_some_and(|(n, _, _)| {
            names
                .get(n as usize..)
                .and_then(|s| s.split(|&c| c == 0).next())
                == Some(name)
        })
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_test_binary_is_not_go() {
        let me = std::env::current_exe().unwrap();
        let mut f = std::fs::File::open(&me).unwrap();
        let mut head = vec![0u8; 64];
        std::io::Read::read_exact(&mut f, &mut head).unwrap();
        let e = super::parse_header(&head).unwrap();
        assert_eq!(
            super::has_section(&mut f, &e, b".go.buildinfo"),
            Some(false)
        );
        assert_eq!(super::has_section(&mut f, &e, b".text"), Some(true));
        assert_eq!(super::has_interp(&mut f, &e), Some(true));
        assert_eq!(super::needs_supervisor(&me), None);
    }
}
