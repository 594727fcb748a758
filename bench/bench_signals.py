"""Signals figures: what system-metric sampling costs a training loop, and how
long an alert takes from the logging call to a webhook receiving it.

Usage: python bench/bench_signals.py [--steps 20000] [--rounds 6] [--latency 5]

1. Sampling overhead. One run, one training loop (a step = a small numpy
   matrix product plus ``log_metrics`` of three values). Rounds alternate
   sampling off / on (the sampler thread of ``start_run``) in the same run, so
   the machine's noise hits both alike; per-step medians and their ratio are
   printed, at the default interval (5 s) and at 0.1 s (50 times as often).
   Under ``git exp run`` the sampler is in the supervisor, another process:
   the loop is timed there too, with ``--system-metrics`` and without.
2. Alert latency. A local HTTP server receives the webhook; the time from the
   ``log_metric`` call whose value crosses a rule (or is NaN) to the POST
   arriving, for a run started with ``start_run`` (watched by its own flush
   thread) and under ``git exp run`` (watched by the supervisor).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import make_repo

LOOP = """
import sys, time, numpy as np, gitexp
steps = int(sys.argv[1])
a = np.random.default_rng(0).random((48, 48))
gitexp.log_metric("warmup", 0.0)
t0 = time.perf_counter()
for i in range(steps):
    b = a @ a
    gitexp.log_metrics({"loss": float(b[0, 0]), "acc": 0.5, "lr": 0.1}, step=i)
print("per_step_us", (time.perf_counter() - t0) / steps * 1e6)
"""


def _loop(run, a, steps: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + steps):
        b = a @ a
        run.log_metrics({"loss": float(b[0, 0]), "acc": 0.5, "lr": 0.1}, step=i)
    return (time.perf_counter() - t0) / steps * 1e6


def bench_overhead(gitexp, repo: str, rounds: int) -> None:
    import numpy as np

    from gitexp.signals import SystemSampler

    a = np.random.default_rng(0).random((48, 48))
    for interval, seconds in ((5.0, 6.0), (0.1, 2.0)):
        run = gitexp.start_run(experiment="bench", repo=repo, system_metrics=False)
        per_step = _loop(run, a, 2000, 0)  # warm up, and the step time
        steps = max(1000, int(seconds / (per_step * 1e-6)))
        off: list[float] = []
        on: list[float] = []
        samples = 0
        cpu = 0.0
        step = 2000
        for r in range(rounds):
            sampler = SystemSampler(run._log_system, None, interval) if r % 2 else None
            if sampler is not None:
                sampler.start()
            (on if sampler else off).append(_loop(run, a, steps, step))
            step += steps
            if sampler is not None:
                sampler.stop()
                samples += sampler.samples
                cpu += sampler.seconds
        run.finish()
        mo, mn = statistics.median(off), statistics.median(on)
        each = cpu / max(1, samples) * 1e3
        print(
            f"in-process sampler every {interval:g} s ({rounds} rounds of {seconds:g} s, "
            f"alternating): per step {mo:.2f} us off, {mn:.2f} us on (ratio {mn / mo:.3f}); "
            f"{samples} sample(s), {each:.2f} ms of CPU each = "
            f"{each / 1e3 / interval * 100:.3f}% of one core",
            flush=True,
        )


def bench_supervised(repo: str, steps: int) -> None:
    """The same loop as a command of ``git exp run``, with the supervisor sampling
    its process tree and without, runs alternating."""
    with open(os.path.join(repo, "loop.py"), "w") as f:
        f.write(LOOP)
    for interval, n_steps, runs in (("5", steps * 10, 6), ("0.1", steps * 4, 8)):
        out: dict[str, list[float]] = {"on": [], "off": []}
        for r in range(runs):
            flag = "--system-metrics" if r % 2 else "--no-system-metrics"
            proc = subprocess.run(
                [
                    "git",
                    "exp",
                    "run",
                    "-q",
                    flag,
                    "--system-interval",
                    interval,
                    "--",
                    sys.executable,
                    "loop.py",
                    str(n_steps),
                ],
                cwd=repo,
                capture_output=True,
                text=True,
                check=True,
            )
            value = float(proc.stdout.split("per_step_us")[1])
            out["on" if r % 2 else "off"].append(value)
        mo, mn = statistics.median(out["off"]), statistics.median(out["on"])
        print(
            f"git exp run, supervisor sampling every {interval} s ({runs} runs of "
            f"{n_steps} steps, alternating): per step {mo:.1f} us without, "
            f"{mn:.1f} us with (ratio {mn / mo:.3f})",
            flush=True,
        )


class Receiver:
    def __init__(self) -> None:
        self.arrived: list[tuple[float, dict]] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.arrived.append((time.time(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event: str, since: int, timeout: float = 30.0) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, body in self.arrived[since:]:
                if body["gitexp"]["event"] == event:
                    return t
            time.sleep(0.005)
        raise TimeoutError(event)


CHILD = """
import sys, time, gitexp
for i in range(3):
    gitexp.log_metric("acc", 0.1, step=i)
    time.sleep(0.3)
open("t0", "w").write(repr(time.time()))
gitexp.log_metric("acc", 0.99, step=3)
time.sleep(3)
"""


def bench_latency(gitexp, repo: str, n: int) -> None:
    recv = Receiver()
    subprocess.run(["git", "config", "exp.alert.webhook", recv.url], cwd=repo, check=True)
    inproc: list[float] = []
    for _ in range(n):
        run = gitexp.start_run(
            experiment="lat", repo=repo, system_metrics=False, alerts=["metrics.acc > 0.9"]
        )
        run.log_metric("acc", 0.1)
        time.sleep(0.3)
        since = len(recv.arrived)
        t0 = time.time()
        run.log_metric("acc", 0.99)
        inproc.append(recv.wait_for("rule", since) - t0)
        run.finish()
    with open(os.path.join(repo, "child.py"), "w") as f:
        f.write(CHILD)
    supervised: list[float] = []
    for _ in range(n):
        since = len(recv.arrived)
        subprocess.run(
            [
                "git",
                "exp",
                "run",
                "-q",
                "--no-system-metrics",
                "--alert",
                "metrics.acc > 0.9",
                "--",
                sys.executable,
                "child.py",
            ],
            cwd=repo,
            check=True,
            capture_output=True,
        )
        t0 = float(open(os.path.join(repo, "t0")).read())
        supervised.append(recv.wait_for("rule", since) - t0)
    for label, xs in (("start_run", inproc), ("git exp run", supervised)):
        print(
            f"alert latency, {label}: median {statistics.median(xs) * 1e3:.0f} ms, "
            f"max {max(xs) * 1e3:.0f} ms over {len(xs)} (rule crossed -> webhook received)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--latency", type=int, default=5)
    args = ap.parse_args()
    import gitexp

    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        make_repo(repo)
        bench_overhead(gitexp, repo, args.rounds)
        bench_supervised(repo, args.steps)
        bench_latency(gitexp, repo, args.latency)


if __name__ == "__main__":
    main()
