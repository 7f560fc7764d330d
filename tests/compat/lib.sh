# Sourced by every tests/compat/*.sh script (run inside `connectx _netns`, see tests/compat.rs).
# $RUN is empty without the library and `env LD_PRELOAD=...` with it; $CX is the connectx binary.
# Each script prints `result ok=K fail=F` (jobs that did their job: bytes or answers received),
# `dups ...` (connected sockets and duplicate 4-tuples while the jobs hold their connections),
# `errors ...` (the most common failure messages) and `version ...`.
set -u
H="/usr/bin/python3 $REPO/tests/compat/harness.py"
D=$(mktemp -d)
N=${COMPAT_N:-40}
# Servers answer (and clients hold) DELAY seconds, longer for more jobs: every job must have
# started before the first one finishes, or its port comes free again.
DELAY=${COMPAT_DELAY:-$((3 + (N - 1) / 40 * 3))}

# many WANT CMD: starts $N copies of the shell command CMD at once, each with $i (0..N-1) and
# $dst (127.0.0.2, .3, .4 in turn) set; a copy succeeded when its output matches the regex WANT.
many() {
    want=$1
    shift
    i=0
    while [ "$i" -lt "$N" ]; do
        dst=127.0.0.$((2 + i % 3))
        (eval "$*") >"$D/out.$i" 2>&1 &
        i=$((i + 1))
    done
    sleep "${HOLD_AT:-$((DELAY / 2)).5}"
    echo "dups $($CX _dups)"
    wait
    report "$want"
}

# report WANT: the result line from $D/out.* (one file per job).
report() {
    ok=$(grep -l -E "$1" "$D"/out.* 2>/dev/null | wc -l)
    echo "result ok=$ok fail=$((N - ok))"
    errs=$(for f in "$D"/out.*; do grep -q -E "$1" "$f" || head -n 1 "$f"; done |
        sed -e 's/^[0-9/-]* [0-9:.]* //' -e 's/\[[0-9]*\]//' -e 's/([0-9]*, /(/' | sort | uniq -c | sort -rn | head -n 2 | tr -s ' \n' '  ')
    echo "errors ${errs:-none}"
}

version() { echo "version $*"; }

# wait_port ADDR:PORT [tcp|udp]: until something listens there (at most 5 s).
wait_port() {
    k=0
    while [ $k -lt 100 ]; do
        if ss -H -ln${2:-t} "src ${1%:*} and sport = :${1##*:}" | grep -q .; then return 0; fi
        sleep 0.05
        k=$((k + 1))
    done
    echo "nothing listens on $1"
    return 1
}
