"""A run logging 10 million points: logging time, finish time and peak RSS.

Each mode runs in its own process (peak RSS is per process):
- calls: 10M `log_metric` calls (the background flusher runs meanwhile);
- arrays: 100 numpy arrays of 100,000 values.
Baseline in the same run: the same loop appending tuples to a list.

Usage: python bench/bench_bigrun.py [--points 10000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import make_repo

CHILD = r"""
import resource, sys, time
import numpy as np
import gitexp
mode, n = sys.argv[1], int(sys.argv[2])
if mode == "baseline":
    t0 = time.perf_counter(); buf = []
    for i in range(n):
        buf.append(("loss", i, 0.5, 0.0))
    t1 = time.perf_counter(); t2 = t1
else:
    run = gitexp.start_run(experiment="big")
    t0 = time.perf_counter()
    if mode == "calls":
        for i in range(n):
            run.log_metric("loss", 0.5, step=i)
    else:
        for _ in range(n // 100_000):
            run.log_metric("loss", np.random.random(100_000))
    t1 = time.perf_counter()
    run.finish()
    t2 = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{mode:>8}: logging {t1 - t0:.1f} s, finish {t2 - t1:.1f} s, peak RSS {rss:.0f} MB")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        make_repo(repo)
        for mode in ("baseline", "calls", "arrays"):
            subprocess.run(
                [sys.executable, "-c", CHILD, mode, str(args.points)], cwd=repo, check=True
            )


if __name__ == "__main__":
    main()
