#!/usr/bin/env bash
# The compatibility suite (tests/compat.rs) with its figures: real programs without and with the
# library, each in its own namespace, printed as the README's table rows.
#   scripts/compat.sh            the smoke run of `cargo test` (N = 40 jobs per program)
#   COMPAT_N=200 scripts/compat.sh   more jobs per program (bounds are then not asserted, only
#                                "never worse" and 0 duplicate 4-tuples)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
echo "| case | version | jobs done without → with | duplicate 4-tuples without → with | errors |"
echo "|---|---|---|---|---|"
cargo test --quiet --test compat -- --nocapture "$@" 2>&1 | tee target/compat.log | grep -o '| [a-z_0-9]* | .*' || true
grep -E '^test result|FAILED|panicked' target/compat.log || true
