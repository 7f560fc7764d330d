#!/usr/bin/env python3
"""Measures the near-exhaustion fill (bench/run.py section 4) for the library as committed and
with the proposed patches in this directory applied cumulatively to a throwaway copy:

    python3 bench/proposals/measure.py        # as root, from the repository root

1. ports-random-stride.patch: visit the range with a random stride instead of +1 (no clustering)
2. udp-busy-hint-and-own-ports.patch (needs 1): ask SOCK_DIAG before binding for a destination
   that lost a race in the last second (no socket swap), and skip ports this process already
   connected to the destination (a per-destination bitmap; PROTOTYPE: not cleared on close).

Prints a markdown table of connect() medians at each fullness. Nothing in the repository changes.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
import run as B  # noqa: E402


def build_variant(tmp, name, patches):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    subprocess.run(f"git -C {ROOT} archive HEAD src Cargo.toml Cargo.lock | tar -x -C {d}",
                   shell=True, check=True)
    for p in patches:
        subprocess.run(["patch", "-s", "-p1", "-d", d, "-i", os.path.join(HERE, p)], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--lib"], cwd=d, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": os.path.join(tmp, "target-" + name)})
    return os.path.join(tmp, "target-" + name, "release", "libconnectx.so")


def main():
    B.build()
    tmp = tempfile.mkdtemp(prefix="connectx-proposals.")
    try:
        variants = [("as committed", B.LIB),
                    ("+ random stride", build_variant(tmp, "stride", ["ports-random-stride.patch"])),
                    ("+ busy hint + own ports", build_variant(
                        tmp, "all", ["ports-random-stride.patch", "udp-busy-hint-and-own-ports.patch"]))]
        pts = (0, 50, 75, 90, 95, 99)
        print("| library | " + " | ".join(f"{p}%" for p in pts) + " | 90% / 0% | full (EAGAIN) |")
        print("|---|" + "---|" * (len(pts) + 2))
        for name, lib in variants:
            B.LIB = lib
            rr = [B.in_netns(B.fill_once, True, port_range=(40000, 40000 + B.R_FILL - 1))
                  for _ in range(5)]
            def at(p, w=10):
                c = B.R_FILL * p // 100
                return statistics.median(r[1] for rows in rr for r in rows
                                         if max(1, c - w) <= r[0] < min(B.R_FILL, c + w) and r[2] == 0)
            full = statistics.median(r[1] for rows in rr for r in rows if r[0] >= B.R_FILL)
            ok = min(sum(1 for r in rows if r[2] == 0) for rows in rr)
            print(f"| {name} (reached {ok}) | " + " | ".join(f"{at(p) / 1000:.1f} µs" for p in pts)
                  + f" | {at(90) / at(0):.2f}× | {full / 1000:.0f} µs |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
