#!/bin/sh
# Long soak (issue 5, item 6): 1,000,000 connects (TCP and UDP, bind-before-connect and plain)
# under libconnectx in a fresh network namespace with a 200-port range, 20 destinations and
# 2,000 sockets held per batch; duplicate 4-tuples checked in /proc/net/{udp,tcp} every SAMPLE
# batches; fd count and VmRSS at the start and the end. Needs root and gcc.
#   scripts/soak.sh [CONNECTS] [SAMPLE_EVERY]
set -eu
cd "$(dirname "$0")/.."
N=${1:-1000000}
EVERY=${2:-10}
cargo build --quiet
LIB=$PWD/target/debug/libconnectx.so
[ -f "$LIB" ] || { echo "soak.sh: $LIB not found" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cc -O1 -Wall -o "$T/nsrun" tests/robust/nsrun.c
cc -O1 -Wall -o "$T/soak" tests/robust/soak.c
start=$(date +%s)
"$T/nsrun" -r 40000-40199 -E "LD_PRELOAD=$LIB" -- "$T/soak" "$N" 2000 20 "$EVERY" | tee "$T/out"
end=$(date +%s)
echo "soak.sh: wall time $((end - start)) s"
summary=$(tail -1 "$T/out")
case "$summary" in
*" failures=0 "*" duplicates=0 "*) ;;
*) echo "soak.sh: FAILED: $summary" >&2; exit 1 ;;
esac
fs=$(echo "$summary" | sed 's/.*fd_start=\([0-9]*\).*/\1/')
fe=$(echo "$summary" | sed 's/.*fd_end=\([0-9]*\).*/\1/')
[ "$fs" = "$fe" ] || { echo "soak.sh: FAILED: fd leak ($fs -> $fe)" >&2; exit 1; }
echo "soak.sh: ok"
