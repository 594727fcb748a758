"""What one ``log_throughput`` call costs, against ``log_metric`` measured in the
same process (the baseline: log_throughput must be as cheap on the hot path).

Usage: python bench/bench_throughput.py [--calls 200000]
Prints the median per-call time of each over 5 rounds, interleaved so that a
noisy neighbour slows both alike, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import make_repo


def per_call_us(fn, n: int) -> float:
    t0 = time.perf_counter_ns()
    for i in range(n):
        fn(i)
    return (time.perf_counter_ns() - t0) / n / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    import gitexp

    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        make_repo(repo)
        run = gitexp.start_run(experiment="bench", repo=repo)
        metric, throughput = [], []
        for _ in range(5):
            metric.append(per_call_us(lambda i: run.log_metric("loss", 0.5, step=i), args.calls))
            throughput.append(
                per_call_us(lambda i: run.log_throughput(32, step=i, name="samples"), args.calls)
            )
        run.finish()
    m, t = statistics.median(metric), statistics.median(throughput)
    print(f"log_metric, one call (median of 5x{args.calls}):     {m:.2f} us")
    print(f"log_throughput, one call (median of 5x{args.calls}): {t:.2f} us  (ratio {t / m:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
