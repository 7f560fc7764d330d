//! The usage of the test tools (`connectx _tools`): they have their own small parsers and are
//! out of the main help (not a stable interface).

pub const TOOLS: &str = "\
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
