# wget --bind-address=127.0.0.1 against three slow HTTP servers.
. "$REPO/tests/compat/lib.sh"
version "$(wget -V | head -n 1 | cut -d' ' -f3)"
$H slowhttp 127.0.0.2:80 127.0.0.3:80 127.0.0.4:80 --delay "$DELAY" >/dev/null
many "^ok 127" '$RUN wget -nv -O - --tries=1 --timeout=20 --bind-address=127.0.0.1 http://$dst/'
