#!/usr/bin/env python3
"""Near-exhaustion fill (bench/run.py section 4, one process fills) for the library built at
several commits, side by side:

    python3 bench/compare_fill.py [COMMIT ...]     # as root; default: 048d824 HEAD

Each commit is exported with `git archive` into a temporary directory and built there (release);
nothing in the working tree changes. Prints a markdown table of connect() medians.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run as B  # noqa: E402


def build_at(tmp, commit):
    d = os.path.join(tmp, commit)
    os.makedirs(d)
    subprocess.run(f"git -C {ROOT} archive {commit} src Cargo.toml Cargo.lock | tar -x -C {d}",
                   shell=True, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--lib"], cwd=d, check=True)
    return os.path.join(d, "target", "release", "libconnectx.so")


def main():
    commits = sys.argv[1:] or ["048d824", "HEAD"]
    B.build()
    tmp = tempfile.mkdtemp(prefix="connectx-compare.")
    try:
        pts = (0, 50, 75, 90, 95, 99)
        print("| library at | " + " | ".join(f"{p}%" for p in pts) + " | 90% / 0% | full (EAGAIN) |")
        print("|---|" + "---|" * (len(pts) + 2))
        for c in commits:
            B.LIB = build_at(tmp, c)
            rr = [B.in_netns(B.fill_once, True, port_range=(40000, 40000 + B.R_FILL - 1))
                  for _ in range(5)]
            def at(p, w=10):
                k = B.R_FILL * p // 100
                return statistics.median(r[1] for rows in rr for r in rows
                                         if max(1, k - w) <= r[0] < min(B.R_FILL, k + w) and r[2] == 0)
            full = statistics.median(r[1] for rows in rr for r in rows if r[0] >= B.R_FILL)
            ok = min(sum(1 for r in rows if r[2] == 0) for rows in rr)
            name = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s", c],
                                  capture_output=True, text=True).stdout.strip()[:60]
            print(f"| `{name}` (reached {ok}) | " + " | ".join(f"{at(p) / 1000:.1f} µs" for p in pts)
                  + f" | {at(90) / at(0):.2f}× | {full / 1000:.0f} µs |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
