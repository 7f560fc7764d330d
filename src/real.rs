//! The real libc functions behind every hook, found once with `dlsym(RTLD_NEXT)`.
//!
//! The library's own socket calls must go through these, never through the public symbols:
//! a call to `libc::close` from inside this library binds to our own exported `close` (the
//! preload comes first in the global scope) and would re-enter the hooks.
//!
//! Each pointer is resolved eagerly by the constructor and lazily on first use (a hook can run
//! before our constructor). A symbol that cannot be found makes the call fail with ENOSYS
//! instead of panicking (redhook panics there; see README design notes).

use libc::{c_int, c_uint, c_void, size_t, sockaddr, socklen_t, ssize_t};
use std::sync::atomic::{AtomicUsize, Ordering};

fn resolve(slot: &AtomicUsize, name: &'static [u8]) -> usize {
    let cached = slot.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: name is a NUL-terminated literal; dlsym has no other preconditions.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    if p != 0 {
        slot.store(p, Ordering::Relaxed);
    }
    p
}

macro_rules! real_fns {
    ($( $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        mod slots {
            use std::sync::atomic::AtomicUsize;
            $( #[allow(non_upper_case_globals)] pub static $name: AtomicUsize = AtomicUsize::new(0); )*
        }
        $(
            /// The next definition of this symbol after ours (normally glibc's).
            ///
            /// # Safety
            /// Same contract as the C function of that name.
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                let p = resolve(&slots::$name, concat!(stringify!($name), "\0").as_bytes());
                if p == 0 {
                    crate::sys::set_errno(libc::ENOSYS);
                    return -1 as $ret;
                }
                // SAFETY: p is the address dlsym returned for a function with this C signature.
                let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(p) };
                unsafe { f($($arg),*) }
            }
        )*
        /// Resolve every pointer now (called from the constructor).
        pub fn resolve_all() {
            $( resolve(&slots::$name, concat!(stringify!($name), "\0").as_bytes()); )*
            resolve(&FCNTL, b"fcntl\0");
            resolve(&FCNTL64, b"fcntl64\0");
            resolve(&CLOSEFROM, b"closefrom\0");
        }
    };
}

real_fns! {
    socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    socketpair(domain: c_int, ty: c_int, protocol: c_int, sv: *mut c_int) -> c_int;
    bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    listen(fd: c_int, backlog: c_int) -> c_int;
    accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    setsockopt(fd: c_int, level: c_int, name: c_int, val: *const c_void, len: socklen_t) -> c_int;
    getsockopt(fd: c_int, level: c_int, name: c_int, val: *mut c_void, len: *mut socklen_t) -> c_int;
    getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    close(fd: c_int) -> c_int;
    close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    dup(fd: c_int) -> c_int;
    dup2(old: c_int, new: c_int) -> c_int;
    dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, alen: socklen_t) -> ssize_t;
    sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t;
    sendmmsg(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int) -> c_int;
    recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> ssize_t;
    recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t;
    recvmmsg(fd: c_int, msgs: *mut libc::mmsghdr, n: c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int;
}

// fcntl is C-variadic. Stable Rust cannot define a variadic function, so our exported fcntl takes
// its third argument as a pointer-sized integer (how the x86-64 and aarch64 ABIs pass it), but it
// can *call* one: the real function is called through a variadic pointer type.
static FCNTL: AtomicUsize = AtomicUsize::new(0);
static FCNTL64: AtomicUsize = AtomicUsize::new(0);

type VariadicFcntl = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;

unsafe fn call_fcntl(
    slot: &AtomicUsize,
    name: &'static [u8],
    fd: c_int,
    cmd: c_int,
    arg: usize,
) -> c_int {
    let p = resolve(slot, name);
    if p == 0 {
        crate::sys::set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: p is glibc's fcntl/fcntl64, a C-variadic function taking (int, int, ...).
    let f: VariadicFcntl = unsafe { std::mem::transmute(p) };
    unsafe { f(fd, cmd, arg) }
}

static CLOSEFROM: AtomicUsize = AtomicUsize::new(0);

/// glibc 2.34+. Where it is missing (a program that found ours with dlsym on an older glibc),
/// the system call it makes.
///
/// # Safety
/// Same contract as closefrom(3).
pub unsafe fn closefrom(low: c_int) {
    let p = resolve(&CLOSEFROM, b"closefrom\0");
    if p == 0 {
        // SAFETY: close_range has no memory arguments.
        unsafe { libc::syscall(libc::SYS_close_range, low.max(0) as c_uint, c_uint::MAX, 0) };
        return;
    }
    // SAFETY: p is glibc's closefrom.
    let f: unsafe extern "C" fn(c_int) = unsafe { std::mem::transmute(p) };
    unsafe { f(low) }
}

/// # Safety
/// Same contract as fcntl(2).
pub unsafe fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    unsafe { call_fcntl(&FCNTL, b"fcntl\0", fd, cmd, arg) }
}

/// # Safety
/// Same contract as fcntl(2).
pub unsafe fn fcntl64(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    unsafe { call_fcntl(&FCNTL64, b"fcntl64\0", fd, cmd, arg) }
}
