"""Crash and concurrency figures for docs/reliability.md.

- points lost at SIGKILL: a process logs one point every ~1 ms and is killed
  at a random moment 1.5-2.5 s in, 20 times; points logged vs kept;
- time to finalise a crashed run: the first `git exp log` after the kill
  (whole process, includes replaying the spool and committing);
- 8 processes x 100 runs (metrics and an artifact) in one experiment.

Usage: python bench/bench_crash.py [--kills 20]
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import make_repo

LOGGER = r"""
import mmap, struct, sys, time, gitexp
f = open(sys.argv[1], "r+b"); counter = mmap.mmap(f.fileno(), 8)
run = gitexp.start_run(experiment="kill")
i = 0
while True:
    run.log_metric("x", float(i), step=i)
    i += 1
    counter[:8] = struct.pack("<q", i)   # points logged so far
    time.sleep(0.001)
"""

WRITER = r"""
import sys, gitexp
for i in range(int(sys.argv[1])):
    with gitexp.start_run(experiment="shared", params={"p": sys.argv[2], "i": i}) as run:
        for s in range(20):
            run.log_metrics({"loss": 1 / (s + 1), "acc": s / 20}, step=s)
        with open(f"a-{sys.argv[2]}.bin", "wb") as f:
            f.write(b"x" * 1000)
        run.log_artifact(f"a-{sys.argv[2]}.bin", name="model.bin")
"""


def kills(repo: str, n: int) -> None:
    import json

    script = os.path.join(repo, "logger.py")
    with open(script, "w") as f:
        f.write(LOGGER)
    counter = os.path.join(repo, "counter")
    rng = random.Random(7)
    lost, logged, finalise = [], [], []
    for _ in range(n):
        with open(counter, "wb") as f:
            f.write(b"\0" * 8)
        proc = subprocess.Popen([sys.executable, script, counter], cwd=repo)
        time.sleep(rng.uniform(1.5, 2.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(counter, "r+b") as f:
            done = struct.unpack("<q", mmap.mmap(f.fileno(), 8)[:8])[0]
        t0 = time.perf_counter()
        out = subprocess.run(
            ["git", "exp", "log", "--json", "-e", "kill", "--sort=-start", "--limit", "1"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        finalise.append(time.perf_counter() - t0)
        row = json.loads(out)[0]
        assert row["status"] == "crashed", row["status"]
        kept = int(row["metrics.x"]) + 1
        logged.append(done)
        lost.append(done - kept)
    print(
        f"SIGKILL x{n}: logged {statistics.median(logged):.0f} points per run (median); "
        f"lost median {statistics.median(lost):.0f}, max {max(lost)} points "
        f"(= the last {max(lost) / max(1, statistics.median(logged)) * 2000:.0f} ms at most)"
    )
    print(
        f"time to finalise a crashed run (first git exp log after the kill): "
        f"median {statistics.median(finalise) * 1000:.0f} ms, max {max(finalise) * 1000:.0f} ms"
    )


def concurrency(repo: str) -> None:
    script = os.path.join(repo, "writer.py")
    with open(script, "w") as f:
        f.write(WRITER)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, script, "100", f"p{k}"], cwd=repo) for k in range(8)]
    for p in procs:
        assert p.wait() == 0
    elapsed = time.perf_counter() - t0
    out = subprocess.run(
        ["git", "exp", "log", "--json", "-e", "shared"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import json

    n = len(json.loads(out))
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo, capture_output=True)
    print(
        f"8 processes x 100 runs: {elapsed:.1f} s, {n} runs recorded, "
        f"git fsck --strict {'clean' if fsck.returncode == 0 else 'FAILED'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        make_repo(repo, {".gitignore": "*.bin\ncounter\n"})
        kills(repo, args.kills)
        concurrency(repo)


if __name__ == "__main__":
    main()
