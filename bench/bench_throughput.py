"""What one ``log_throughput`` call costs, against ``log_metric`` measured in the
same process (the baseline: log_throughput must be as cheap on the hot path).

Usage: python bench/bench_throughput.py [--calls 200000]
Prints the median per-call time of each over 5 rounds, interleaved so that a
noisy neighbour slows both alike, and their ratio.

On a shared machine the times swing with the load; instruction counts do not.
``--only metric|throughput|none N`` makes N calls of one kind and exits, for
valgrind: the instructions of N calls are the total less that of ``none``:

    for k in none metric throughput; do valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null python bench/bench_throughput.py --only $k 50000; done
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


def only(gitexp, kind: str, n: int) -> None:
    """N calls of one kind in a run (the run set up and warmed alike for every kind)."""
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        make_repo(repo)
        run = gitexp.start_run(experiment="bench", repo=repo)
        run.log_metric("loss", 0.5, step=0)
        run.log_throughput(32, step=0, name="samples")
        if kind == "metric":
            for i in range(n):
                run.log_metric("loss", 0.5, step=i)
        elif kind == "throughput":
            for i in range(n):
                run.log_throughput(32, step=i, name="samples")
        os._exit(0)  # no finish: its cost is not the call's


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--only", nargs=2, metavar=("KIND", "N"))
    args = ap.parse_args()
    import gitexp

    if args.only:
        only(gitexp, args.only[0], int(args.only[1]))

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
