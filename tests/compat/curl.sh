# curl with CURL_OPTS: --interface 127.0.0.1, --local-port 5000, or --local-port 30000-30009.
. "$REPO/tests/compat/lib.sh"
version "$(curl -V | head -n 1 | cut -d' ' -f2)"
$H slowhttp 127.0.0.2:80 127.0.0.3:80 127.0.0.4:80 --delay "$DELAY" >/dev/null
many "^ok 127" '$RUN curl -sS --max-time 20 $CURL_OPTS http://$dst/'
