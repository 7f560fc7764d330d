//! Finding libconnectx.so: --lib, then $CONNECTX_LIB, then next to the executable (a cargo
//! build: target/<profile>/), then the install layouts relative to it: Debian multiarch
//! (PREFIX/lib/<triplet>/connectx/, what scripts/install.sh and the .deb install), then
//! PREFIX/lib/connectx/ and PREFIX/lib/.

use super::{Fail, Res};
use std::path::{Path, PathBuf};

const NAME: &str = "libconnectx.so";

/// The Debian multiarch triplet of this build (`dpkg-architecture -qDEB_HOST_MULTIARCH`):
/// the library and this command come from one build, so they share it. install.sh asks the
/// command for it (`connectx _multiarch`) so that both always agree.
pub const MULTIARCH: &str = if cfg!(target_arch = "x86_64") {
    "x86_64-linux-gnu"
} else if cfg!(target_arch = "aarch64") {
    "aarch64-linux-gnu"
} else if cfg!(target_arch = "x86") {
    "i386-linux-gnu"
} else if cfg!(target_arch = "arm") {
    "arm-linux-gnueabihf"
} else if cfg!(target_arch = "riscv64") {
    "riscv64-linux-gnu"
} else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
    "powerpc64le-linux-gnu"
} else if cfg!(target_arch = "s390x") {
    "s390x-linux-gnu"
} else {
    "unknown-linux-gnu"
};

fn check(p: &Path, origin: &str) -> Res<PathBuf> {
    let abs = std::fs::canonicalize(p).map_err(|e| Fail {
        code: 2,
        msg: format!(
            "library {} (from {origin}) cannot be used: {}",
            p.display(),
            super::ioerr(&e)
        ),
    })?;
    if !abs.is_file() {
        return Err(Fail {
            code: 2,
            msg: format!("library {} (from {origin}) is not a file", p.display()),
        });
    }
    if let Some(why) = super::elf::not_a_library(&abs) {
        return Err(Fail {
            code: 2,
            msg: format!(
                "library {} (from {origin}) cannot be preloaded: {why}",
                p.display()
            ),
        });
    }
    // LD_PRELOAD splits its list on spaces and colons.
    let s = abs.to_string_lossy();
    if s.contains(' ') || s.contains(':') {
        return Err(Fail {
            code: 2,
            msg: format!(
                "library path {s} contains a space or colon, which LD_PRELOAD cannot carry"
            ),
        });
    }
    Ok(abs)
}

/// The library to preload, as an absolute path.
pub fn find(explicit: Option<&str>) -> Res<PathBuf> {
    if let Some(p) = explicit {
        return check(Path::new(p), "--lib");
    }
    if let Some(p) = std::env::var_os("CONNECTX_LIB").filter(|p| !p.is_empty()) {
        return check(Path::new(&p), "CONNECTX_LIB");
    }
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    let mut tried = Vec::new();
    if let Some(dir) = dir {
        for cand in [
            dir.join(NAME),
            dir.join("../lib")
                .join(MULTIARCH)
                .join("connectx")
                .join(NAME),
            dir.join("../lib/connectx").join(NAME),
            dir.join("../lib").join(NAME),
        ] {
            if cand.is_file() {
                return check(&cand, "next to the connectx executable");
            }
            tried.push(cand.display().to_string());
        }
    }
    Err(Fail {
        code: 2,
        msg: format!(
            "cannot find {NAME} (looked in: {}); install both with scripts/install.sh, or pass --lib PATH or set CONNECTX_LIB",
            if tried.is_empty() {
                "nowhere: executable path unknown".to_string()
            } else {
                tried.join(", ")
            }
        ),
    })
}

/// `lib` prepended to an existing LD_PRELOAD value, unless already there.
pub fn preload_value(lib: &Path, existing: Option<&str>) -> String {
    let lib_s = lib.to_string_lossy().to_string();
    match existing.map(str::trim).filter(|e| !e.is_empty()) {
        None => lib_s,
        Some(e) => {
            let present = e
                .split([' ', ':'])
                .filter(|x| !x.is_empty())
                .any(|x| x == lib_s || std::fs::canonicalize(x).is_ok_and(|c| c == lib));
            if present {
                e.to_string()
            } else {
                format!("{lib_s}:{e}")
            }
        }
    }
}
