# haproxy `source 127.0.0.1`: every server connection binds the source address first.
. "$REPO/tests/compat/lib.sh"
version "$(haproxy -v | head -n 1 | cut -d' ' -f3)"
$H slowhttp 127.0.0.2:80 127.0.0.3:80 127.0.0.4:80 --delay "$DELAY" >/dev/null
cat >"$D/haproxy.cfg" <<C
global
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 0
frontend f
  bind 127.0.0.1:8080
  default_backend b
backend b
  balance roundrobin
  source 127.0.0.1
  server s2 127.0.0.2:80
  server s3 127.0.0.3:80
  server s4 127.0.0.4:80
C
$RUN haproxy -f "$D/haproxy.cfg" -D -p "$D/pid" || echo "haproxy did not start"
wait_port 127.0.0.1:8080
$H http "$N" http://x/ --via 127.0.0.1:8080 >"$D/load" &
sleep "$((DELAY / 2)).5"
echo "dups $($CX _dups)"
wait $!
echo "result $(cat "$D/load")"
echo "errors -"
