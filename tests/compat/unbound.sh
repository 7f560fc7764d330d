# unbound `outgoing-interface: 127.0.0.1`, forwarding to three slow DNS servers; one client
# sends N distinct queries (its timeouts set above the servers' DELAY).
. "$REPO/tests/compat/lib.sh"
version "$(unbound -V | head -n 1 | cut -d' ' -f2)"
$H slowdns 127.0.0.2:53 127.0.0.3:53 127.0.0.4:53 --delay "$DELAY" >/dev/null
cat >"$D/unbound.conf" <<C
server:
  interface: 127.0.0.1
  port: 53
  outgoing-interface: 127.0.0.1
  do-not-query-localhost: no
  do-ip6: no
  username: ""
  chroot: ""
  directory: "$D"
  pidfile: "$D/unbound.pid"
  use-syslog: no
  logfile: "$D/unbound.log"
  module-config: "iterator"
  num-threads: 1
  unknown-server-time-limit: $((DELAY * 1000 + 5000))
  infra-cache-min-rtt: $((DELAY * 1000 + 5000))
  discard-timeout: $((DELAY * 1000 + 7000))
  so-reuseport: no
  harden-referral-path: no
  qname-minimisation: no
  cache-max-ttl: 0
  infra-keep-probing: yes
  jostle-timeout: 10000
forward-zone:
  name: "."
  forward-addr: 127.0.0.2
  forward-addr: 127.0.0.3
  forward-addr: 127.0.0.4
C
$RUN unbound -d -c "$D/unbound.conf" >"$D/unbound.out" 2>&1 &
ub=$!
wait_port 127.0.0.1:53 u || cat "$D/unbound.out" "$D/unbound.log"
$H dns "$N" 127.0.0.1:53 --timeout $((DELAY * 3)) >"$D/load" &
sleep "$((DELAY / 2)).5"
echo "dups $($CX _dups)"
wait $!
echo "result $(cat "$D/load")"
echo "errors $(grep -i -m 1 'error\|fail' "$D/unbound.log")"
kill $ub
