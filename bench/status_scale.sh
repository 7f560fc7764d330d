#!/usr/bin/env bash
# `connectx status` against `ss -tan | wc -l` with 10,000 and 50,000 TCP sockets open in a
# fresh namespace (loopback connections held by python processes of 10,000 sockets each, the
# per-process fd limit here being 20,000). Prints the median of 5 runs of each, in ms.
# Usage (root, from the repository root, after `cargo build --release`): bench/status_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CX=$PWD/target/release/connectx
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/hold.py" <<'PY'
import socket, sys, time
n, port = int(sys.argv[1]) // 2, int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(65535)
keep = []
for i in range(n):
    c = socket.socket(); c.connect(("127.0.0.1", port)); s, _ = srv.accept(); keep += [c, s]
print("ready", flush=True)
time.sleep(600)
PY
cat >"$work/inside.sh" <<'SH'
echo 65535 >/proc/sys/net/core/somaxconn
for i in $(seq 1 $((N / 10000))); do python3 "$W/hold.py" 10000 $((9000 + i)) >"$W/ready.$i" & done
for i in $(seq 1 $((N / 10000))); do while ! grep -q ready "$W/ready.$i" 2>/dev/null; do sleep 0.2; done; done
ms() { s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
med() { tr ' ' '\n' | sort -n | sed -n 3p; }
st=""; js=""; pr=""; ss=""
for r in 1 2 3 4 5; do
    st="$st $(ms "$CX" status)"; js="$js $(ms "$CX" status --json)"
    pr="$pr $(ms "$CX" status --prometheus)"; ss="$ss $(ms sh -c 'ss -tan | wc -l')"
done
echo "| $(ss -tan | tail -n +2 | wc -l) | $(echo $st | med) | $(echo $js | med) | $(echo $pr | med) | $(echo $ss | med) |"
kill $(jobs -p) 2>/dev/null || true
SH
echo "| TCP sockets | status | status --json | status --prometheus | ss -tan \| wc -l |"
echo "|---|---|---|---|---|"
for n in 10000 50000; do
    N=$n W=$work CX=$CX "$CX" _netns --range 10000-65000 -- sh "$work/inside.sh"
done
