#!/bin/sh
# Long fuzz (issue 5, item 5): for each seed, the same random call sequence
# (tests/robust/fuzz.c) without and with libconnectx, each in a fresh network namespace;
# reports the first differing line per seed and any crash. A difference counts only if a second
# pair of runs shows it again (a few kernel answers depend on timing; tests/fuzz.rs does the
# same); a crash counts at once. Needs root and gcc.
#   scripts/fuzz.sh [SEEDS] [CALLS] [guard]
set -u
cd "$(dirname "$0")/.."
SEEDS=${1:-50}
CALLS=${2:-200000}
MODE=${3:-}
cargo build --quiet || exit 1
LIB=$PWD/target/debug/libconnectx.so
[ -f "$LIB" ] || { echo "fuzz.sh: $LIB not found" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cc -O1 -Wall -o "$T/nsrun" tests/robust/nsrun.c || exit 1
cc -O1 -Wall -o "$T/fuzz" tests/robust/fuzz.c || exit 1
bad=0
start=$(date +%s)
pair() {
    "$T/nsrun" -r 40000-40999 -- "$T/fuzz" "$1" "$CALLS" $MODE >"$T/k" 2>/dev/null
    "$T/nsrun" -r 40000-40999 -E "LD_PRELOAD=$LIB" -- "$T/fuzz" "$1" "$CALLS" $MODE >"$T/l" 2>/dev/null
}
timing=0
for seed in $(seq 1 "$SEEDS"); do
    pair "$seed"
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "seed $seed: library run exit $rc after $(wc -l <"$T/l") lines; next call:"
        sed -n "$(($(wc -l <"$T/l") + 1))p" "$T/k"
        bad=$((bad + 1))
    elif ! cmp -s "$T/k" "$T/l"; then
        first=$(diff "$T/k" "$T/l" | head -4)
        pair "$seed"
        if cmp -s "$T/k" "$T/l"; then
            echo "seed $seed: a difference that did not come back (kernel timing):"
            echo "$first"
            timing=$((timing + 1))
        else
            echo "seed $seed: first difference:"
            diff "$T/k" "$T/l" | head -4
            bad=$((bad + 1))
        fi
    fi
done
end=$(date +%s)
echo "fuzz.sh: $SEEDS seeds x $CALLS calls${MODE:+ ($MODE)}, $bad with differences or crashes, $timing with a difference that did not come back, $((end - start)) s"
[ $bad -eq 0 ]
