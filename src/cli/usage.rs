//! The text of `connectx --help`.

pub const TEXT: &str = "\
connectx: stop unmodified programs from running out of ephemeral ports

usage:
  connectx run [options] -- CMD [ARGS...]   run CMD with libconnectx.so preloaded
  connectx demo                             show the problem and the fix (throwaway namespace)
  connectx help | --help                    this text
  connectx --version

run options (each sets the variable the library reads):
  --tcp on|off            CONNECTX_TCP          (default on)
  --udp on|off            CONNECTX_UDP          (default on)
  --log LEVEL             CONNECTX_LOG: off, error, warn, info, debug (default warn)
  --log-file PATH         CONNECTX_LOG_FILE     (default stderr)
  --getsockname bind|port0  CONNECTX_GETSOCKNAME (default bind)
  --bind-busy share|kernel  CONNECTX_BIND_BUSY (default share)
  --lib PATH              library to preload; else $CONNECTX_LIB, else libconnectx.so
                          next to this executable, in ../lib or ../lib/connectx
  The library is prepended to LD_PRELOAD (not added twice). Exit status is CMD's;
  127 if CMD cannot be run, 2 for a bad command line or a library not found.

test tools (used by the demo, the tests and scripts/; not a stable interface):
  connectx _netns [--range LO-HI] [--reserved LIST] -- CMD...
      CMD in a fresh network (and PID) namespace: lo up, port sysctls set;
      exit 3 if no namespace can be created
  connectx _serve [--tcp A:P]... [--udp A:P]... [--http A:P]... [--bind-only A:P]...
                  [--seconds N] [--bg]
      echo servers (UDP replies to each sender), a keep-alive HTTP/1.1 server, a
      TCP port bound but not listening; prints `ready tcp=A:P ... pid=N`
  connectx _client --proto tcp|udp --mode plain|bind0|bindany0|port:P [--src IP]
                   --dst A:P[,A:P...] [--count N] [--keep-going] [--echo]
                   [--reuseport] [--set reuseaddr|reuseport|noport=0|1] [--getsockname]
                   [--hold SECS [--bg]]
      legacy client; prints `opened=K failed=F failed_step=S errno=E [echo_ok=A
      echo_bad=B] ports=N port_list=... sockname_port=P opts_bind=... opts_connect=...`
  connectx _demo-case CASE without|with --lib PATH
      one measurement of the demo (run it inside _netns); prints `value=... detail=...`
  connectx _dups
      connected sockets and duplicate 4-tuples in this namespace:
      `udp_connected=N udp_dups=N tcp_connected=N tcp_dups=N`
";
