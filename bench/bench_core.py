"""Core figures: one log_metric call, a small run created and finished in-process,
and `git exp log` over N runs (whole process, from the shell).

Usage: python bench/bench_core.py [--runs 1000]
Prints figures and, where a baseline makes sense, the ratio against it
(`log_metric` against appending a tuple to a list in the same process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import make_repo


def bench_log_metric(gitexp, repo: str) -> dict[str, float]:
    run = gitexp.start_run(experiment="bench", repo=repo)
    n = 200_000
    samples = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for i in range(n):
            run.log_metric("loss", 0.5, step=i)
        samples.append((time.perf_counter_ns() - t0) / n / 1000)
    base = []
    lst: list = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for i in range(n):
            lst.append(("loss", i, 0.5, 0.0))
        base.append((time.perf_counter_ns() - t0) / n / 1000)
        lst.clear()
    arr = np.random.default_rng(0).random(10_000_000)
    t0 = time.perf_counter()
    run.log_metric("batched", arr)
    batched = len(arr) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    run.finish()
    finish = time.perf_counter() - t0
    return {
        "log_metric_us": statistics.median(samples),
        "list_append_us": statistics.median(base),
        "batched_points_per_s": batched,
        "finish_after_11M_points_s": finish,
    }


def bench_small_run(gitexp, repo: str, artifact: str, n: int = 30) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        with gitexp.start_run(
            experiment="w2", repo=repo, params={f"p{j}": j * i for j in range(10)}
        ) as run:
            for step in range(100):
                run.log_metrics({"loss": 1 / (step + 1), "acc": step / 100, "lr": 0.1}, step=step)
            run.log_artifact(artifact)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_log(repo: str, n_runs: int, gitexp) -> tuple[float, float]:
    import gitexp.store as st  # noqa: F401

    existing = len(
        subprocess.run(
            ["git", "for-each-ref", "refs/experiments/w3/"],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    )
    for i in range(existing, n_runs):
        with gitexp.start_run(
            experiment="w3", repo=repo, params={"lr": i / n_runs, "seed": i}
        ) as run:
            run.log_metrics({"loss": 1 / (i + 1), "acc": i / n_runs}, step=0)
    t = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            ["git", "exp", "log", "-e", "w3", "--sort=-acc"],
            cwd=repo,
            check=True,
            capture_output=True,
        )
        t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run(["git-exp", "--help"], cwd=repo, check=True, capture_output=True)
    helpt = time.perf_counter() - t0
    return min(t), helpt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    import gitexp

    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        make_repo(repo)
        art = os.path.join(tmp, "artifact.bin")
        with open(art, "wb") as f:
            f.write(os.urandom(1024))
        lm = bench_log_metric(gitexp, repo)
        print(
            f"log_metric, one call (median of 5x200k):  {lm['log_metric_us']:.2f} us"
            f"  (list.append baseline {lm['list_append_us']:.2f} us, ratio "
            f"{lm['log_metric_us'] / lm['list_append_us']:.1f}x)"
        )
        print(f"log_metric, numpy array of 10M: {lm['batched_points_per_s'] / 1e6:.1f} M points/s")
        print(f"finish() after 11M points:                {lm['finish_after_11M_points_s']:.2f} s")
        # the 11M points just written are still being written back: the first fsync
        # of a small run would wait for them (ext4 orders data before metadata)
        os.sync()
        w2 = bench_small_run(gitexp, repo, art)
        print(f"run (10 params, 3x100 metrics, 1 KB artifact), median of 30: {w2:.1f} ms")
        log_s, help_s = bench_log(repo, args.runs, gitexp)
        print(f"git exp log over {args.runs} runs (whole process, best of 3): {log_s:.2f} s")
        print(f"git-exp --help (whole process): {help_s * 1000:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
