"""`git exp log` at scale: 10,000 and 100,000 runs.

Runs are generated in format version 1 with `git fast-import` (creating 100k
runs through the API would take minutes and measure something else). Prints,
for each size: the first `git exp log` (builds the catalog: every run read
from git), warm calls, a call after 1% of the runs changed, and peak RSS.
The baseline in the same run is `git for-each-ref refs/experiments/` (C git
listing the same refs, no parsing).

Usage: python bench/bench_catalog.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import generate  # noqa: E402

# a wrapper process per measurement: RUSAGE_CHILDREN of this process would be the
# peak of every child so far, not of the one measured
_PEAK = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def timed(cmd: list[str], cwd: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one whole process."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, *cmd], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout
    return time.perf_counter() - t0, int(out.split()[-1]) // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = ap.parse_args()
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            repo = os.path.join(tmp, "repo")
            t0 = time.perf_counter()
            generate(repo, n)
            gen = time.perf_counter() - t0
            base, _ = timed(["git", "for-each-ref", "refs/experiments/"], repo)
            cold, rss_cold = timed(["git", "exp", "log", "--sort=-acc", "--limit", "20"], repo)
            time.sleep(2.1)  # let the racy window pass, as it would between two commands
            subprocess.run(
                ["git", "exp", "log", "--limit", "1"],
                cwd=repo,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            warm = min(
                timed(["git", "exp", "log", "--sort=-acc", "--limit", "20"], repo)[0]
                for _ in range(3)
            )
            full, rss_full = timed(["git", "exp", "log"], repo)
            _, rss_warm = timed(["git", "exp", "log", "--sort=-acc", "--limit", "20"], repo)
            jsn, rss_json = timed(["git", "exp", "log", "--json"], repo)
            # 1% of runs change (tagged), then list again
            refs = subprocess.run(
                ["git", "for-each-ref", "--format=%(refname)", "refs/experiments/"],
                cwd=repo,
                capture_output=True,
                text=True,
            ).stdout.split()[: max(1, n // 100)]
            import gitexp.store as st

            with st.ExpStore(repo) as store:
                from gitexp.records import ExpRef

                for ref in refs:
                    store.update(ExpRef.from_ref(ref), st.RunDelta(tags_add=["changed"]), "tag")
            changed, _ = timed(["git", "exp", "log", "--sort=-acc", "--limit", "20"], repo)
            print(f"{n:>7} runs  generated in {gen:.1f} s; for-each-ref {base:.2f} s")
            print(
                f"         git exp log (first call, builds the catalog): {cold:.2f} s, "
                f"{rss_cold} MB peak RSS"
            )
            print(
                f"         git exp log --sort=-acc --limit 20, warm:       {warm:.2f} s, "
                f"{rss_warm} MB peak RSS"
            )
            print(
                f"         git exp log, all rows printed, warm:            {full:.2f} s, "
                f"{rss_full} MB peak RSS"
            )
            print(
                f"         git exp log --json, all rows, warm:             {jsn:.2f} s, "
                f"{rss_json} MB peak RSS"
            )
            print(f"         after {len(refs)} runs changed:                  {changed:.2f} s")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
