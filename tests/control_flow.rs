//! Control flow that leaves or re-enters a hook (issue 16): cancellation, pthread_exit and
//! siglongjmp out of a signal handler, a signal handler's own socket calls, fork while another
//! thread is inside a hook, fork children and the library's temporary sockets. Each asserts the
//! program's view. The scenarios live in tests/robust/control.c, run in a fresh network
//! namespace (tests/robust/nsrun.c).
//!
//! Each of these failed on main before issue 16 (checked with main's library:
//! `CONNECTX_TEST_LIB=/path/to/main/target/debug/libconnectx.so cargo test --test control_flow`):
//! the cancel cases marked so aborted ("FATAL: exception not rethrown"), the jump cases
//! connected onto a taken 4-tuple, fork children waited 2 s and got EAGAIN. The netlink one is a
//! race: on main 1 child of 3,000 held a netlink socket in 1 run of 2 on a loaded machine (two
//! busy loops beside it), 1 of 2,000 in 1 run of 5 unloaded; 0 in every run with the fix.

#[path = "robust/common.rs"]
mod common;
mod cxtest;

use std::path::PathBuf;
use std::time::Duration;

/// The library under test; CONNECTX_TEST_LIB names another build (to check that a test fails
/// without the fix).
fn library() -> PathBuf {
    match std::env::var_os("CONNECTX_TEST_LIB") {
        Some(p) => PathBuf::from(p),
        None => cxtest::lib(),
    }
}

struct Control {
    _dir: common::TempDir,
    ns: PathBuf,
    prog: PathBuf,
}

fn control(tag: &str) -> Control {
    common::require_root();
    let dir = common::TempDir::new(tag);
    let ns = common::nsrun(&dir);
    let prog = common::compile(&dir, "control.c", "control");
    Control {
        _dir: dir,
        ns,
        prog,
    }
}

impl Control {
    /// Runs `control args` in a fresh namespace with `range`, with the library or without.
    fn run(&self, preload: bool, range: &str, args: &[&str], limit: u64) -> common::Out {
        let lib = library().display().to_string();
        let env: Vec<(&str, &str)> = if preload {
            vec![("LD_PRELOAD", lib.as_str())]
        } else {
            vec![]
        };
        let o = common::run(
            common::in_ns(&self.ns, range, &env, &self.prog, args),
            Duration::from_secs(limit),
        );
        println!("control {args:?} (preload {preload}):\n{}", o.describe());
        assert_eq!(
            (o.code, o.signal),
            (Some(0), None),
            "the program did not survive (SIGABRT is glibc's \"FATAL: exception not \
             rethrown\"):\n{}",
            o.describe()
        );
        o
    }
}

const WIDE: &str = "40000-40999";
/// Four ports: four UDP sockets to one destination fill it.
const FOUR: &str = "40000-40003";

/// A thread blocked in (or, for the *-pending calls, with a cancel pending when it makes) each
/// call connectx makes on the program's behalf is cancelled: pthread_join gets
/// PTHREAD_CANCELED, its cleanup handler ran, the call did not return first, the process lives.
fn cancelled_in(call: &str) {
    let c = control(&format!("cf-cancel-{call}"));
    for preload in [false, true] {
        let o = c.run(preload, WIDE, &["cancel", call], 60);
        assert_eq!(
            o.num("blocked"),
            1,
            "not blocked in {call}:\n{}",
            o.describe()
        );
        assert_eq!(o.num("cancelled"), 1, "not cancelled:\n{}", o.describe());
        assert_eq!(
            o.num("cleanup"),
            1,
            "cleanup handler did not run:\n{}",
            o.describe()
        );
        assert_eq!(o.num("returned"), 0, "{call} returned:\n{}", o.describe());
    }
}

/// Failed on main: bind(ip, 0) + a blocking connect (the reproduction).
#[test]
fn cancel_in_a_blocking_tcp_connect_of_a_deferred_bind() {
    cancelled_in("tcp-deferred");
}

/// Failed on main: bind(ip, P) + a blocking connect (the port is opened before the call).
#[test]
fn cancel_in_a_blocking_tcp_connect_on_a_fixed_port() {
    cancelled_in("tcp-fixed");
}

/// Passed on main (not a socket connectx changes): the control.
#[test]
fn cancel_in_a_plain_tcp_connect() {
    cancelled_in("tcp-plain");
}

/// Failed on main: sendto(MSG_FASTOPEN) is an implicit, blocking connect.
#[test]
fn cancel_in_a_fastopen_sendto() {
    cancelled_in("fastopen-sendto");
}

/// Failed on main.
#[test]
fn cancel_in_a_fastopen_sendmsg() {
    cancelled_in("fastopen-sendmsg");
}

/// Failed on main: a cancel pending when the thread makes a UDP connect (the other
/// reproduction: the lock's own real connect was the cancellation point).
#[test]
fn cancel_pending_at_a_udp_connect() {
    cancelled_in("udp-connect-pending");
}

/// Passed on main (the real send was already outside the catch): coverage.
#[test]
fn cancel_pending_at_a_udp_sendto() {
    cancelled_in("udp-sendto-pending");
}

/// Passed on main: coverage of a blocking receive on a socket connectx manages.
#[test]
fn cancel_in_a_blocking_udp_recv() {
    cancelled_in("udp-recv");
}

/// Failed on main: a SIGUSR1 handler calls pthread_exit while its thread is blocked in a
/// bind(ip, 0) + connect: the thread exits (its cleanup handler ran), the process lives.
#[test]
fn pthread_exit_from_a_signal_handler_in_a_blocking_connect() {
    let c = control("cf-exit");
    for preload in [false, true] {
        let o = c.run(preload, WIDE, &["exit-in-handler"], 60);
        assert_eq!(o.num("blocked"), 1, "{}", o.describe());
        assert_eq!(
            o.num("exited"),
            1,
            "the thread did not exit:\n{}",
            o.describe()
        );
        assert_eq!(
            o.num("cleanup"),
            1,
            "cleanup handler did not run:\n{}",
            o.describe()
        );
    }
}

/// The four-port range is full towards 127.0.0.2:7 and a fifth socket shares one of the ports
/// towards 127.0.0.3:7; its reconnect to 127.0.0.2:7 (every 4-tuple taken) must be refused, and
/// no 4-tuple held twice. Without the library the fifth socket gets no port at all (EAGAIN).
fn refused_onto_a_taken_tuple(o: &common::Out) {
    assert_eq!(o.num("sharer_connected"), 1, "{}", o.describe());
    assert_eq!(
        o.num("reconnect_ret"),
        -1,
        "the shared socket was connected onto a taken 4-tuple:\n{}",
        o.describe()
    );
    let e = o.num("reconnect_errno") as i32;
    assert!(
        e == libc::EAGAIN || e == libc::EADDRNOTAVAIL,
        "refused with errno {e}, not EAGAIN/EADDRNOTAVAIL:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("later_ret"),
        -1,
        "a later call of the thread went unchecked:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("duplicates"),
        0,
        "duplicate 4-tuples:\n{}",
        o.describe()
    );
}

/// Failed on main (connected, 2 duplicate 4-tuples): alarm() + a SIGALRM handler that
/// siglongjmps out of a blocking bind(ip, 0) + connect, the classic connect timeout; the
/// thread's later calls must still get the policy.
#[test]
fn after_a_longjmp_out_of_a_blocking_connect_a_shared_socket_is_still_checked() {
    let c = control("cf-longjmp");
    let o = c.run(true, FOUR, &["longjmp"], 60);
    assert_eq!(
        o.num("jumped"),
        1,
        "the handler did not jump:\n{}",
        o.describe()
    );
    refused_onto_a_taken_tuple(&o);
}

/// Failed on main (connected, a duplicate 4-tuple): the SIGALRM handler reconnects the shared
/// socket itself while its thread is inside the blocking connect's hook, and returns (EINTR).
#[test]
fn a_signal_handler_connect_during_another_hook_is_checked() {
    let c = control("cf-handler");
    let o = c.run(true, FOUR, &["handler"], 60);
    assert_eq!(o.num("jumped"), 0, "{}", o.describe());
    assert_eq!(
        o.num("tcp_errno") as i32,
        libc::EINTR,
        "the blocking connect was not interrupted:\n{}",
        o.describe()
    );
    refused_onto_a_taken_tuple(&o);
}

/// Failed on main (the connect after the storm passed unchecked to the kernel: EAGAIN), and on
/// this branch before glibc's cleanup chain undid a phase left by a jump (cancellation stayed
/// disabled, and the thread's own stale busy token answered EAGAIN): a 200 us timer's handler
/// siglongjmps out of whatever the thread is in (connectx's own work most of the time) for 1 s;
/// then, from a deeper call chain, the thread is cancellable as the program left it and a socket
/// that was being connected at the last jump connects to a free destination at once.
#[test]
fn jumps_out_of_connectx_own_work_leave_nothing_set() {
    let c = control("cf-jumpstorm");
    let o = c.run(true, FOUR, &["jumpstorm"], 60);
    // Under load (the other tests of this file run beside it) the thread runs less often.
    assert!(o.num("jumps") > 20, "few jumps:\n{}", o.describe());
    assert_eq!(
        o.num("cancel_enabled"),
        1,
        "cancellation left disabled:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("after_ret"),
        0,
        "the connect after the jumps failed:\n{}",
        o.describe()
    );
    assert!(
        o.num("after_ms") < 500,
        "the connect after the jumps waited:\n{}",
        o.describe()
    );
}

/// Failed on main (22 to 28 of 32 went through, unchecked, onto a taken 4-tuple): a 1 ms
/// timer's SIGALRM handler reconnects 32 sockets, one per call, each sharing a port of a full
/// range, onto a taken 4-tuple while the thread keeps making UDP connects, so that most handler
/// calls land inside the thread's hooks: every one must be refused, no 4-tuple held twice.
#[test]
fn signal_handler_connects_inside_hooks_are_all_checked() {
    let c = control("cf-handlerstorm");
    let o = c.run(true, FOUR, &["handlerstorm"], 60);
    assert_eq!(
        o.num("handler_calls"),
        32,
        "handler calls missing:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("handler_ok"),
        0,
        "a handler's connect went through onto a taken 4-tuple:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("duplicates"),
        0,
        "duplicate 4-tuples:\n{}",
        o.describe()
    );
}

/// Failed on main (10 of 10 children waited 2 s and got EAGAIN): a child forked while another
/// thread of the parent is inside a UDP connect of socket s connects s to a free destination
/// at once.
#[test]
fn a_fork_child_connects_a_socket_another_thread_was_connecting() {
    let c = control("cf-forkbusy");
    let o = c.run(true, FOUR, &["forkbusy", "10"], 120);
    assert_eq!(o.num("children"), 10, "{}", o.describe());
    assert_eq!(
        o.num("ok_children"),
        10,
        "fork children could not connect at once (status 2: failed after >= 500 ms, 1: failed, \
         3: slow):\n{}",
        o.describe()
    );
}

/// Failed on main now and then (a race; the issue saw 8 children of 2,303): 8 threads make UDP connects, reconnects
/// and fixed-port binds in a 4-port range (temporary netlink sockets for dumps and busy pools)
/// while 2 threads fork 1,500 children each: no child holds a netlink socket (the program makes
/// none, so any is the library's).
#[test]
fn fork_children_of_two_forking_threads_hold_no_netlink_socket_of_ours() {
    let c = control("cf-forkfds");
    let o = c.run(true, FOUR, &["forkfds", "8", "1500"], 300);
    assert_eq!(o.num("children"), 3000, "{}", o.describe());
    assert!(
        o.num("ops") > 3000,
        "the threads did little:\n{}",
        o.describe()
    );
    assert_eq!(
        o.num("leaky_children"),
        0,
        "children inherited the library's netlink sockets ({} fds):\n{}",
        o.num("leaked_fds"),
        o.describe()
    );
}
