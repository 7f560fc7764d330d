# nginx `proxy_bind 127.0.0.1` (NGINX_BIND=port0) or `proxy_bind 127.0.0.1:5000` (fixed).
. "$REPO/tests/compat/lib.sh"
version "$(nginx -v 2>&1 | cut -d/ -f2)"
$H slowhttp 127.0.0.2:80 127.0.0.3:80 127.0.0.4:80 --delay "$DELAY" >/dev/null
case ${NGINX_BIND:-port0} in
port0) bind=127.0.0.1 ;;
*) bind=127.0.0.1:5000 ;;
esac
cat >"$D/nginx.conf" <<C
user root;
worker_processes 1;
pid $D/nginx.pid;
error_log $D/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $D/body; proxy_temp_path $D/proxy; fastcgi_temp_path $D/fcgi;
  uwsgi_temp_path $D/uwsgi; scgi_temp_path $D/scgi;
  upstream b { server 127.0.0.2:80 max_fails=0; server 127.0.0.3:80 max_fails=0;
               server 127.0.0.4:80 max_fails=0; }
  server {
    listen 127.0.0.1:8080;
    location / { proxy_pass http://b; proxy_bind $bind; proxy_next_upstream off; }
  }
}
C
$RUN nginx -c "$D/nginx.conf" -p "$D" 2>&1 || echo "nginx did not start"
wait_port 127.0.0.1:8080
$H http "$N" http://x/ --via 127.0.0.1:8080 >"$D/load" &
sleep "$((DELAY / 2)).5"
echo "dups $($CX _dups)"
wait $!
echo "result $(cat "$D/load")"
echo "errors $(grep -o 'failed ([0-9]*: [^)]*) while connecting' "$D/error.log" | sort | uniq -c | sort -rn | head -n 1 | tr -s ' ' ' ')"
