//! Going to the background once set up: the parent prints the result line
//! (with the child's pid) and exits, so a shell script can go on as soon as
//! the sockets exist — no polling for readiness, no races.

use std::io::Write;

/// Fork. In the parent, prints `line pid=CHILD` and returns Some(exit code);
/// in the child, detaches stdio and returns None.
pub fn background(line: &str) -> std::io::Result<Option<i32>> {
    std::io::stdout().flush()?;
    // SAFETY: the command is single-threaded; the child only continues the
    // same single-threaded program.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        println!("{line} pid={pid}");
        return Ok(Some(0));
    }
    // Child: let go of the pipes the caller reads, so `$(...)` returns.
    let devnull = c"/dev/null";
    // SAFETY: plain system calls on our own descriptors.
    unsafe {
        let fd = libc::open(devnull.as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
    Ok(None)
}
