# socat TCP:dst:7,bind=127.0.0.1 against echo servers: a line goes there and back.
. "$REPO/tests/compat/lib.sh"
version "$(socat -V | sed -n 2p | cut -d' ' -f3)"
$H hold 127.0.0.2:7 127.0.0.3:7 127.0.0.4:7 >/dev/null
many "^ping $" '(echo "ping $i"; sleep $DELAY) | $RUN socat - TCP:$dst:7,bind=127.0.0.1 | sed "s/ [0-9]*$/ /"'
