# squid `tcp_outgoing_address 127.0.0.1`, requests to three origin servers.
. "$REPO/tests/compat/lib.sh"
version "$(squid -v | head -n 1 | awk '{print $4}')"
$H slowhttp 127.0.0.2:80 127.0.0.3:80 127.0.0.4:80 --delay "$DELAY" >/dev/null
cat >"$D/squid.conf" <<C
http_port 127.0.0.1:3128
http_access allow all
tcp_outgoing_address 127.0.0.1
cache deny all
cache_mem 8 MB
cache_log $D/cache.log
access_log none
pid_filename $D/squid.pid
cache_effective_user proxy
dns_nameservers 127.0.0.1
connect_retries 0
forward_max_tries 1
retry_on_error off
shutdown_lifetime 0 seconds
max_filedescriptors 1024
C
chmod 755 "$D"; touch "$D/cache.log"; chown proxy "$D/cache.log"
# Its shared memory segments are named after the service: one name per run.
svc=cx$(basename "$D" | tr -dc a-zA-Z0-9)
$RUN squid -n "$svc" -f "$D/squid.conf" -N -d 0 >"$D/squid.out" 2>&1 &
squid=$!
wait_port 127.0.0.1:3128 || cat "$D/squid.out" "$D/cache.log"
$H http "$N" http://127.0.0.2/,http://127.0.0.3/,http://127.0.0.4/ --via 127.0.0.1:3128 >"$D/load" &
sleep "$((DELAY / 2)).5"
echo "dups $($CX _dups)"
wait $!
echo "result $(cat "$D/load")"
echo "errors $(grep -o 'commBind.*\|connect.*failed.*' "$D/cache.log" | sed 's/[0-9]\{4,\}/N/g' | sort | uniq -c | sort -rn | head -n 1 | tr -s ' ' ' ')"
kill $squid 2>/dev/null
rm -f /dev/shm/"$svc"-*
