#!/usr/bin/env bash
# dig -b 127.0.0.1 while a connected-UDP service holds every port of a 10-port
# range, in throwaway network namespaces with dnsmasq answering on 127.0.0.1:53:
# once with neither under connectx (dig fails: ";; UDP setup with
# 127.0.0.1#53(127.0.0.1) for example.com failed: address in use."), once with
# both under connectx (dig gets the answer).
# Exits non-zero if the with-connectx answer does not come.
#
# Usage: scripts/dig-demo.sh
#   CONNECTX_BIN  the connectx binary (default: target/debug/connectx)
#   CONNECTX_LIB  the library (default: found by `connectx run`)
set -euo pipefail

QUERY=(@127.0.0.1 -b 127.0.0.1 example.com +time=2 +tries=1)

if [[ "${1:-}" == --inside ]]; then
    # --inside without|with: a service holds every UDP port, then dig -b needs one. Without
    # connectx neither the service nor dig has it; with it both do (the same user's connectx
    # processes share ports: a lock built on SO_REUSEPORT).
    mode=$2
    "$DNSMASQ" --keep-in-foreground --no-resolv --no-hosts --address=/example.com/192.0.2.1 \
        --listen-address=127.0.0.1 --bind-interfaces --port=53 --user=root --group=root \
        --pid-file >/dev/null 2>&1 &
    up=no
    for _ in $(seq 50); do
        if awk '$2 == "0100007F:0035" { found = 1 } END { exit !found }' /proc/net/udp; then
            up=yes
            break
        fi
        sleep 0.1
    done
    if [[ $up == no ]]; then
        # e.g. in an unprivileged user namespace dnsmasq cannot change its group.
        echo "dnsmasq did not start on 127.0.0.1:53 (run this script as root)"
        echo "NOSERVER"
        exit 0
    fi
    "$CX" _serve --udp 127.0.0.2:7 --udp 127.0.0.3:7 --seconds 30 --bg >/dev/null
    if [[ $mode == with ]]; then run=("$CX" run --); else run=(); fi
    fill=$("${run[@]}" "$CX" _client --proto udp --mode bind0 --dst 127.0.0.2:7,127.0.0.3:7 \
        --count 20 --keep-going --echo --hold 30 --bg)
    echo "service $mode connectx: $fill"
    ports=$(sed -n 's/.* ports=\([0-9]*\).*/\1/p' <<<"$fill")
    if [[ $ports != 10 ]]; then
        echo "  the service holds $ports ports, not all 10: the demo's premise does not hold" >&2
    fi
    set +e
    out=$("${run[@]}" dig "${QUERY[@]}" 2>&1)
    rc=$?
    answer=$(grep -m1 -E '^example\.com\.' <<<"$out")
    echo "$mode connectx: exit $rc: ${answer:-$(grep -m1 -E 'address in use|failed|timed out' <<<"$out")}"
    if [[ $rc == 0 && $answer == *192.0.2.1* ]]; then echo "ANSWER"; else echo "NOANSWER"; fi
    exit 0
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CX=${CONNECTX_BIN:-$here/../target/debug/connectx}
if [[ ! -x $CX ]]; then
    echo "dig-demo: connectx binary not found at $CX: run \`cargo build\` (or set CONNECTX_BIN)" >&2
    exit 2
fi
if ! command -v dig >/dev/null; then
    echo "dig-demo: dig is not installed: apt-get install bind9-dnsutils" >&2
    exit 2
fi
DNSMASQ=$(command -v dnsmasq || true)
[[ -n $DNSMASQ ]] || DNSMASQ=/usr/sbin/dnsmasq
if [[ ! -x $DNSMASQ ]]; then
    echo "dig-demo: dnsmasq is not installed: apt-get install dnsmasq-base" >&2
    exit 2
fi
export CX DNSMASQ

echo "dig ${QUERY[*]} while every UDP port is held (range 40000-40009, dnsmasq on 127.0.0.1:53)"
without=$("$CX" _netns --range 40000-40009 -- bash "${BASH_SOURCE[0]}" --inside without)
echo "$without"
with=$("$CX" _netns --range 40000-40009 -- bash "${BASH_SOURCE[0]}" --inside with)
echo "$with"
if [[ $(tail -n1 <<<"$without") == NOSERVER || $(tail -n1 <<<"$with") == NOSERVER ]]; then
    echo "dig-demo: no DNS server, nothing shown" >&2
    exit 2
fi
if [[ $(tail -n1 <<<"$with") == ANSWER ]]; then
    echo "PASS: with connectx dig got its answer"
    exit 0
fi
echo "FAIL: with connectx dig got no answer" >&2
exit 1
