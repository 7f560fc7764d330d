//! Just enough ELF reading to tell, before exec, whether the dynamic loader will preload a
//! library into a program (it needs PT_INTERP) and whether a file is a shared library the
//! loader can map into this architecture's programs.

use std::io::Read;
use std::path::Path;

const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const ET_DYN: u16 = 3;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_1_PIE: u64 = 0x0800_0000;

/// This build's ELF class and machine: the library must match the programs it goes into,
/// which are of the same architecture as this command (both come from one build).
const CLASS: u8 = if cfg!(target_pointer_width = "64") {
    2
} else {
    1
};
const MACHINE: u16 = if cfg!(target_arch = "x86_64") {
    62
} else if cfg!(target_arch = "aarch64") {
    183
} else if cfg!(target_arch = "x86") {
    3
} else if cfg!(target_arch = "arm") {
    40
} else if cfg!(target_arch = "riscv64") {
    243
} else if cfg!(target_arch = "powerpc64") {
    21
} else if cfg!(target_arch = "s390x") {
    22
} else {
    0 // unknown: not checked
};

pub struct Elf {
    pub class: u8,
    pub little: bool,
    pub etype: u16,
    pub machine: u16,
    /// Has a PT_INTERP program header: the kernel starts the dynamic loader, which reads
    /// LD_PRELOAD. Without it (static, also static-pie) nothing is preloaded.
    pub interp: bool,
    /// Where the dynamic section is in the file (offset, size), if there is one.
    pub dynamic: Option<(u64, u64)>,
}

fn u16_at(b: &[u8], off: usize, little: bool) -> Option<u16> {
    let a: [u8; 2] = b.get(off..off + 2)?.try_into().ok()?;
    Some(if little {
        u16::from_le_bytes(a)
    } else {
        u16::from_be_bytes(a)
    })
}
fn u32_at(b: &[u8], off: usize, little: bool) -> Option<u32> {
    let a: [u8; 4] = b.get(off..off + 4)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(a)
    } else {
        u32::from_be_bytes(a)
    })
}
fn u64_at(b: &[u8], off: usize, little: bool) -> Option<u64> {
    let a: [u8; 8] = b.get(off..off + 8)?.try_into().ok()?;
    Some(if little {
        u64::from_le_bytes(a)
    } else {
        u64::from_be_bytes(a)
    })
}

/// Parses the header and program headers of `bytes` (the file's first 64 KiB suffice: program
/// headers follow the ELF header in every file the linkers write). None: not ELF.
pub fn parse(b: &[u8]) -> Option<Elf> {
    if b.len() < 52 || &b[..4] != b"\x7fELF" {
        return None;
    }
    let class = b[4];
    let little = b[5] == 1;
    let etype = u16_at(b, 16, little)?;
    let machine = u16_at(b, 18, little)?;
    let (phoff, phentsize, phnum) = match class {
        2 => (
            u64_at(b, 32, little)? as usize,
            u16_at(b, 54, little)? as usize,
            u16_at(b, 56, little)? as usize,
        ),
        1 => (
            u32_at(b, 28, little)? as usize,
            u16_at(b, 42, little)? as usize,
            u16_at(b, 44, little)? as usize,
        ),
        _ => return None,
    };
    let mut interp = false;
    let mut dynamic = None;
    for i in 0..phnum.min(256) {
        let ph = phoff.saturating_add(i * phentsize);
        let Some(t) = u32_at(b, ph, little) else {
            break;
        };
        interp |= t == PT_INTERP;
        if t == PT_DYNAMIC {
            dynamic = match class {
                2 => Some((u64_at(b, ph + 8, little)?, u64_at(b, ph + 32, little)?)),
                _ => Some((
                    u32_at(b, ph + 4, little)? as u64,
                    u32_at(b, ph + 16, little)? as u64,
                )),
            };
        }
    }
    Some(Elf {
        class,
        little,
        etype,
        machine,
        interp,
        dynamic,
    })
}

/// True if the dynamic section has DF_1_PIE: an executable, which glibc refuses to preload
/// ("cannot dynamically load position-independent executable") although its type is ET_DYN.
fn is_pie(f: &std::fs::File, e: &Elf) -> bool {
    use std::os::unix::fs::FileExt;
    let Some((off, size)) = e.dynamic else {
        return false;
    };
    let mut d = vec![0u8; size.min(1 << 20) as usize];
    if f.read_exact_at(&mut d, off).is_err() {
        return false;
    }
    let step = if e.class == 2 { 16 } else { 8 };
    for ent in d.chunks_exact(step) {
        let (tag, val) = if e.class == 2 {
            (u64_at(ent, 0, e.little), u64_at(ent, 8, e.little))
        } else {
            (
                u32_at(ent, 0, e.little).map(u64::from),
                u32_at(ent, 4, e.little).map(u64::from),
            )
        };
        match (tag, val) {
            (Some(0), _) | (None, _) => break, // DT_NULL
            (Some(DT_FLAGS_1), Some(v)) => return v & DF_1_PIE != 0,
            _ => {}
        }
    }
    false
}

const PT_LOAD: u32 = 1;
const DT_STRTAB: u64 = 5;
const DT_SONAME: u64 = 14;

/// The file offset of virtual address `addr` (through the PT_LOAD segments).
fn file_offset(b: &[u8], e: &Elf, addr: u64) -> Option<u64> {
    let (phoff, phentsize, phnum) = if e.class == 2 {
        (
            u64_at(b, 32, e.little)? as usize,
            u16_at(b, 54, e.little)? as usize,
            u16_at(b, 56, e.little)? as usize,
        )
    } else {
        (
            u32_at(b, 28, e.little)? as usize,
            u16_at(b, 42, e.little)? as usize,
            u16_at(b, 44, e.little)? as usize,
        )
    };
    for i in 0..phnum.min(256) {
        let ph = phoff.saturating_add(i * phentsize);
        if u32_at(b, ph, e.little)? != PT_LOAD {
            continue;
        }
        let (off, vaddr, filesz) = if e.class == 2 {
            (
                u64_at(b, ph + 8, e.little)?,
                u64_at(b, ph + 16, e.little)?,
                u64_at(b, ph + 32, e.little)?,
            )
        } else {
            (
                u32_at(b, ph + 4, e.little)? as u64,
                u32_at(b, ph + 8, e.little)? as u64,
                u32_at(b, ph + 16, e.little)? as u64,
            )
        };
        if addr >= vaddr && addr < vaddr + filesz {
            return Some(addr - vaddr + off);
        }
    }
    None
}

/// A shared library's DT_SONAME.
pub fn soname(p: &Path) -> Option<String> {
    let b = std::fs::read(p).ok()?;
    let e = parse(&b)?;
    let (off, size) = e.dynamic?;
    let d = b.get(off as usize..(off + size) as usize)?;
    let step = if e.class == 2 { 16 } else { 8 };
    let (mut strtab, mut name) = (None, None);
    for ent in d.chunks_exact(step) {
        let (tag, val) = if e.class == 2 {
            (u64_at(ent, 0, e.little)?, u64_at(ent, 8, e.little)?)
        } else {
            (
                u32_at(ent, 0, e.little)? as u64,
                u32_at(ent, 4, e.little)? as u64,
            )
        };
        match tag {
            0 => break,
            DT_STRTAB => strtab = Some(val),
            DT_SONAME => name = Some(val),
            _ => {}
        }
    }
    let at = (file_offset(&b, &e, strtab?)? + name?) as usize;
    let s = b.get(at..)?;
    let end = s.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// The version the library carries (src/config.rs `connectx_version`).
pub fn library_version(p: &Path) -> Option<String> {
    let b = std::fs::read(p).ok()?;
    let marker = b"CONNECTX_LIBRARY_VERSION=";
    let at = b.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let end = b[at..].iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&b[at..at + end]).into_owned())
}

pub fn read(p: &Path) -> std::io::Result<Option<Elf>> {
    let mut f = std::fs::File::open(p)?;
    let mut buf = Vec::with_capacity(65536);
    f.by_ref().take(65536).read_to_end(&mut buf)?;
    Ok(parse(&buf))
}

/// Why `p` cannot be preloaded into this architecture's programs, or None if it can.
pub fn not_a_library(p: &Path) -> Option<String> {
    let e = match read(p) {
        Err(e) => return Some(super::ioerr(&e)),
        Ok(None) => return Some("not an ELF file".into()),
        Ok(Some(e)) => e,
    };
    if e.etype != ET_DYN {
        return Some(format!("not a shared library (ELF type {})", e.etype));
    }
    if e.class != CLASS || e.little != cfg!(target_endian = "little") {
        return Some(format!(
            "a {}-bit library, not loadable into {}-bit programs",
            if e.class == 2 { 64 } else { 32 },
            if CLASS == 2 { 64 } else { 32 }
        ));
    }
    if std::fs::File::open(p).is_ok_and(|f| is_pie(&f, &e)) {
        return Some("not a shared library (a position-independent executable)".into());
    }
    if MACHINE != 0 && e.machine != MACHINE {
        return Some(format!(
            "built for another architecture (ELF machine {}, expected {MACHINE})",
            e.machine
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_executable_is_elf_of_our_class_with_an_interpreter() {
        let e = read(&std::env::current_exe().unwrap()).unwrap().unwrap();
        assert_eq!(e.class, CLASS);
        assert_eq!(e.machine, MACHINE);
        assert!(e.interp, "a test built by cargo is dynamically linked");
    }

    #[test]
    fn text_and_short_files_are_not_elf() {
        assert!(parse(b"#!/bin/sh\necho hi\n").is_none());
        assert!(parse(b"\x7fELF").is_none());
        assert!(not_a_library(Path::new("/etc/passwd")).is_some());
    }
}
