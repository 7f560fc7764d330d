//! The library's SONAME: libconnectx.so.0 (major version 0: the preload interface, the
//! CONNECTX_* variables, may still change incompatibly). The file keeps its plain name
//! (LD_PRELOAD names a path; nothing links against it), the SONAME says which interface it is
//! (`connectx --version` shows it; lintian and ldd expect one).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libconnectx.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
