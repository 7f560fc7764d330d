# dnsmasq forwarding to three slow DNS servers: `--server=IP@127.0.0.1` (DNSMASQ=src) or plain
# `--server=IP` (DNSMASQ=default); one client sends N distinct queries.
. "$REPO/tests/compat/lib.sh"
version "$(dnsmasq -v | head -n 1 | cut -d' ' -f3)"
$H slowdns 127.0.0.2:53 127.0.0.3:53 127.0.0.4:53 --delay "$DELAY" >/dev/null
case ${DNSMASQ:-src} in
src) src=@127.0.0.1 ;;
*) src= ;;
esac
$RUN dnsmasq -k --user=root --no-resolv --no-hosts --cache-size=0 --listen-address=127.0.0.1 \
    --bind-interfaces --port=53 --conf-file=/dev/null --pid-file="$D/pid" --all-servers --dns-forward-max=1000 --log-facility="$D/dnsmasq.log" \
    --server=127.0.0.2$src --server=127.0.0.3$src --server=127.0.0.4$src >"$D/dnsmasq.out" 2>&1 &
dm=$!
wait_port 127.0.0.1:53 u || cat "$D/dnsmasq.out"
$H dns "$N" 127.0.0.1:53 --timeout $((DELAY * 3)) >"$D/load" &
sleep "$((DELAY / 2)).5"
echo "dups $($CX _dups)"
wait $!
echo "result $(cat "$D/load")"
echo "errors $(grep -v 'started\|compile\|using nameserver\|cleared cache\|reading' "$D/dnsmasq.log" | head -n 1)"
kill $dm
