# dig -b 127.0.0.1 (DIG=dig) or kdig -b 127.0.0.1 (DIG=kdig) against three slow DNS servers.
. "$REPO/tests/compat/lib.sh"
case ${DIG:-dig} in
dig) version "$(dig -v 2>&1 | cut -d' ' -f2)" ;;
*) version "$(kdig -V | awk '{print $NF}')" ;;
esac
$H slowdns 127.0.0.2:53 127.0.0.3:53 127.0.0.4:53 --delay "$DELAY" >/dev/null
case ${DIG:-dig} in
dig) opts="+tries=1 +timeout=$((DELAY * 3))" ;;
*) opts="+retry=0 +timeout=$((DELAY * 3))" ;;
esac
many "10\.0\.0\.1" '$RUN ${DIG:-dig} -b 127.0.0.1 @$dst $opts q$i.example A'
