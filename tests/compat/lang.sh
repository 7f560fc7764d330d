# A client in LANG (python, node, java, perl): bind(127.0.0.1, 0) + connect, one process.
. "$REPO/tests/compat/lib.sh"
C=$REPO/tests/compat
case $LANG_CLIENT in
python) version "$(/usr/bin/python3 -V | cut -d' ' -f2)"; cmd="/usr/bin/python3 $C/client.py" ;;
node) version "$(node -v)"; cmd="node $C/client.js" ;;
java) version "$(java -XX:-UsePerfData -version 2>&1 | head -n 1 | cut -d'"' -f2)"; cmd="java -XX:-UsePerfData -Xshare:auto -XX:TieredStopAtLevel=1 $C/Client.java" ;;
perl) version "$(perl -e 'print $^V')"; cmd="perl $C/client.pl" ;;
esac
$H hold 127.0.0.2:7 127.0.0.3:7 127.0.0.4:7 >/dev/null
$RUN $cmd "$N" "$DELAY" >"$D/out" 2>&1 &
k=0; while [ $k -lt 400 ] && [ "$(ss -Htn state established '( dport = :7 )' | wc -l)" -lt 10 ]; do sleep 0.05; k=$((k + 1)); done
sleep 1
echo "dups $($CX _dups)"
wait $!
grep -E '^(result|errors) ' "$D/out" || { echo "result ok=0 fail=$N"; echo "errors $(head -n 3 "$D/out" | tr '\n' ' ')"; }
