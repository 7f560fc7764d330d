#!/usr/bin/env bash
# curl --local-port P, run twice against a keep-alive HTTP/1.1 server (so curl
# closes first and leaves TIME_WAIT on P), without and with connectx, each in
# its own throwaway network namespace (10-port range).
# Without: the second run fails `curl: (45) bind failed with errno 98`.
# With:    both runs succeed. Exits non-zero if that does not happen.
#
# Usage: scripts/curl-demo.sh
#   CONNECTX_BIN  the connectx binary (default: target/debug/connectx)
#   CONNECTX_LIB  the library (default: found by `connectx run`)
set -euo pipefail

PORT=5000
URL=http://127.0.0.2:8080/

if [[ "${1:-}" == --inside ]]; then
    mode=$2
    "$CX" _serve --http 127.0.0.2:8080 --seconds 30 --bg >/dev/null
    pre=()
    if [[ $mode == with ]]; then pre=("$CX" run --); fi
    ok=0
    for i in 1 2; do
        if out=$("${pre[@]}" curl -sS -o /dev/null -w 'local port %{local_port}\n' --max-time 5 \
            --local-port "$PORT" "$URL" 2>&1); then
            echo "  run $i: ok ($out)"
            ok=$((ok + 1))
        else
            echo "  run $i: failed: $(grep -m1 '^curl:' <<<"$out" || echo "$out")"
        fi
    done
    echo "  result: $ok/2"
    exit 0
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CX=${CONNECTX_BIN:-$here/../target/debug/connectx}
if [[ ! -x $CX ]]; then
    echo "curl-demo: connectx binary not found at $CX: run \`cargo build\` (or set CONNECTX_BIN)" >&2
    exit 2
fi
if ! command -v curl >/dev/null; then
    echo "curl-demo: curl is not installed: apt-get install curl" >&2
    exit 2
fi
export CX

echo "curl --local-port $PORT $URL, run twice (server keeps the connection alive; curl closes first)"
results=()
for mode in without with; do
    echo "$mode connectx:"
    out=$("$CX" _netns --range 40000-40009 -- bash "${BASH_SOURCE[0]}" --inside "$mode")
    echo "$out"
    results+=("$(sed -n 's/^  result: //p' <<<"$out")")
done

if [[ ${results[0]} != 2/2 ]]; then
    echo "without connectx the second run failed, as the kernel alone does"
else
    echo "note: without connectx both runs succeeded (not the usual kernel behaviour)"
fi
if [[ ${results[1]} == 2/2 ]]; then
    echo "PASS: with connectx both runs succeeded"
    exit 0
fi
echo "FAIL: with connectx only ${results[1]:-0/2} runs succeeded" >&2
exit 1
