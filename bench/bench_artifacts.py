"""Artifact logging: a large file the first time (hash + copy in one pass), the
same unchanged file again (stat cache: nothing read), and the bytes stored.

Baselines in the same run: a plain `shutil.copyfile` of the same file (the
disk's own copy speed, into the page cache), and the same copy followed by an
fsync (durable, as every CAS object is).

Usage: python bench/bench_artifacts.py [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import gitexp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import make_repo


def du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        make_repo(repo, {".gitignore": "*.bin\n"})
        big = os.path.join(repo, "model.bin")
        with open(big, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.size_mb):
                f.write(block)
        old = time.time() - 10  # as a checkpoint written a while ago
        os.utime(big, (old, old))
        # each timed write starts with no dirty pages left by the one before
        # (writeback of an earlier write otherwise throttles the next one)
        os.sync()
        t0 = time.perf_counter()
        shutil.copyfile(big, os.path.join(tmp, "copy.bin"))
        copy_s = time.perf_counter() - t0
        os.unlink(os.path.join(tmp, "copy.bin"))
        os.sync()
        # the same copy made durable, as the CAS makes every object (fsync before rename)
        t0 = time.perf_counter()
        shutil.copyfile(big, os.path.join(tmp, "copy.bin"))
        fd = os.open(os.path.join(tmp, "copy.bin"), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        durable_s = time.perf_counter() - t0
        os.unlink(os.path.join(tmp, "copy.bin"))
        objects = os.path.join(repo, ".git", "exp", "objects")
        with gitexp.start_run(experiment="art", repo=repo) as run:
            os.sync()
            t0 = time.perf_counter()
            run.log_artifact(big)
            first = time.perf_counter() - t0
        after_first = du(objects)
        again = []
        for _ in range(5):
            with gitexp.start_run(experiment="art", repo=repo) as run:
                t0 = time.perf_counter()
                run.log_artifact(big)
                again.append(time.perf_counter() - t0)
        extra = du(objects) - after_first
        mb = args.size_mb
        print(
            f"log_artifact of {mb} MB, first time: {first:.2f} s ({mb / first:.0f} MB/s); "
            f"plain copy of the same file: {copy_s:.2f} s (ratio {first / copy_s:.2f}x); "
            f"copy + fsync: {durable_s:.2f} s (ratio {first / durable_s:.2f}x)"
        )
        print(
            f"same unchanged file logged again in 5 runs: median {sorted(again)[2] * 1000:.1f} ms;"
            f" extra bytes stored: {extra}"
        )


if __name__ == "__main__":
    main()
