"""The model registry and significance at scale.

1. Registry operations per second on a model with 1,000 versions: register
   (the 1st-100th and the 901st-1000th), promote, alias, rollback, resolve
   ``NAME@production``, and the reads (``show`` of the whole model, ``history``,
   ``list``). Baseline in the same run: the floor of any registry change, an
   empty commit plus a compare-and-swap ref move by the same git layer.
2. ``git exp compare`` over 10,000 runs (two groups of 5,000 selected by
   ``--where``), as a command, warm; baseline: ``git exp log --where`` of one
   side (the selection alone), and the statistics alone in-process.

Runs are generated in format version 1 with ``git fast-import`` (each with a
final ``auc``, ``params.opt`` and one output artifact in its manifest).

Usage: python bench/bench_registry.py [--versions 1000] [--runs 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

from benchlib import IDENTITY, make_repo  # noqa: E402

from gitexp.records import canonical_json  # noqa: E402


def _blob(out, data: bytes) -> None:
    out.write(b"data %d\n" % len(data))
    out.write(data)
    out.write(b"\n")


def generate(path: str, n: int, experiment: str = "bench") -> list[str]:
    """``n`` finished runs; their refs."""
    head = make_repo(path)
    rng = random.Random(0)
    code = canonical_json({"commit": head, "head": head, "tree": "0" * 40, "dirty": False})
    env = canonical_json({"python": {"implementation": "CPython", "version": "3.11.7"}})
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=path, stdin=subprocess.PIPE)
    out = proc.stdin
    assert out is not None
    out.write(b"blob\nmark :1\n")
    _blob(out, code)
    out.write(b"blob\nmark :2\n")
    _blob(out, env)
    refs = []
    t = 1795000000
    for i in range(n):
        run_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime(t + i)) + f"{i:06x}"
        opt = "a" if i % 2 else "b"
        auc = rng.gauss(0.90 if opt == "a" else 0.901, 0.01)
        run = {
            "format": 1,
            "id": run_id,
            "experiment": experiment,
            "status": "finished",
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + i)),
            "end_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + i + 60)),
            "command": ["python", "train.py"],
            "tags": [],
            "notes": [],
            "links": {},
            "writers": {},
            "host": "bench",
            "user": "bench",
        }
        summary = {"metrics": {}, "final": {"auc": auc, "loss": 1 - auc}}
        artifacts = [
            {"path": "model.pt", "blake3": f"{i:064x}", "size": 1 << 20, "mode": "100644",
             "role": "output"}
        ]  # fmt: skip
        ref = f"refs/experiments/{experiment}/{run_id}"
        refs.append(ref)
        out.write(f"commit {ref}\n".encode())
        out.write(f"committer b <b@b> {t + i} +0000\n".encode())
        msg = f"finish {experiment}/{run_id}\n".encode()
        out.write(b"data %d\n%s\n" % (len(msg), msg))
        out.write(f"from {head}\n".encode())
        out.write(b"deleteall\n")
        for name, data in (
            ("run.json", run),
            ("params.json", {"opt": opt, "seed": i}),
            ("summary.json", summary),
            ("artifacts.json", artifacts),
        ):
            out.write(f"M 100644 inline {name}\n".encode())
            _blob(out, canonical_json(data))
        out.write(b"M 100644 :1 code.json\nM 100644 :2 env.json\n\n")
    out.close()
    assert proc.wait() == 0
    return refs


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s ({seconds / n * 1000:.1f} ms each)"


def du(path: str) -> float:
    """MiB of git objects (loose and packed) in a repository."""
    out = subprocess.run(
        ["git", "count-objects", "-v"], cwd=path, capture_output=True, text=True, check=True
    ).stdout
    kib = {k: int(v) for k, v in (line.split(": ") for line in out.splitlines())}
    return (kib["size"] + kib["size-pack"]) / 1024


def registry_bench(versions: int) -> None:
    from gitexp.registry import ops, record
    from gitexp.store import ExpStore

    env = {**os.environ, **IDENTITY}
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        refs = generate(repo, versions)
        bare = os.path.join(tmp, "remote.git")
        subprocess.run(["git", "init", "-q", "--bare", bare], check=True)
        subprocess.run(["git", "remote", "add", "origin", bare], cwd=repo, check=True)
        t0 = time.perf_counter()
        subprocess.run(["git", "exp", "push", "-q"], cwd=repo, check=True, env=env,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        runs_push = time.perf_counter() - t0
        before = du(repo)
        with ExpStore(repo) as store:
            # the floor: an empty commit and a compare-and-swap ref move
            r = store.repo
            tree = r.write_tree({})
            tip = None
            t0 = time.perf_counter()
            for _ in range(200):
                sha = r.write_commit(tree, [tip] if tip else [], "floor")
                assert r.set_ref("refs/bench/floor", tip, sha, "bench")
                tip = sha
            floor = time.perf_counter() - t0
            print(f"baseline: empty commit + CAS ref move   {rate(200, floor)}")

            times = []
            for ref in refs:
                t0 = time.perf_counter()
                ops.register(store, "fraud", ref)
                times.append(time.perf_counter() - t0)
            first, last = sum(times[:100]), sum(times[-100:])
            print(f"register, versions 1-100                {rate(100, first)}")
            print(
                f"register, versions {versions - 99}-{versions}         {rate(100, last)}"
                f"  ({last / floor * 200 / 100:.1f}x the floor)"
            )
            n = min(200, versions // 2)
            t0 = time.perf_counter()
            for v in range(1, n + 1):
                ops.promote(store, "fraud", v, "production")
            t = time.perf_counter() - t0
            print(f"promote to production (archives one)    {rate(n, t)}")
            m = min(100, versions - n)
            t0 = time.perf_counter()
            for v in range(n + 1, n + m + 1):
                ops.promote(store, "fraud", v, aliases=["champion"])
            t = time.perf_counter() - t0
            print(f"set an alias                            {rate(m, t)}")
            k = min(100, n - 1)
            t0 = time.perf_counter()
            for _ in range(k):
                ops.rollback(store, "fraud", "production")
            t = time.perf_counter() - t0
            print(f"rollback production                     {rate(k, t)}")
            t0 = time.perf_counter()
            for _ in range(200):
                ops.resolve(store, "fraud@production")
            t = time.perf_counter() - t0
            print(f"resolve fraud@production                {rate(200, t)}")
            t0 = time.perf_counter()
            data = ops.describe(store, "fraud")
            t = time.perf_counter() - t0
            assert len(data["versions"]) == versions
            print(f"show fraud ({versions} versions)             {t * 1000:.0f} ms")
            t0 = time.perf_counter()
            events = ops.history(store, "fraud")
            t = time.perf_counter() - t0
            print(f"history ({len(events)} changes)              {t * 1000:.0f} ms")
            t0 = time.perf_counter()
            ops.list_models(store)
            t = time.perf_counter() - t0
            print(f"list                                    {t * 1000:.1f} ms")
            size = len(r.read_blob(r.lookup_path(record.read(r, "fraud").tree, "model.json")[1]))
            print(f"model.json at {versions} versions: {size / 1024:.1f} KiB")
        after = du(repo)
        print(f"git objects the model added: {after - before:.1f} MiB loose", end="")
        subprocess.run(["git", "gc", "-q"], cwd=repo, check=True)
        print(f"; the repository after git gc: {du(repo):.1f} MiB in all")
        t0 = time.perf_counter()
        subprocess.run(["git", "exp", "push", "-q"], cwd=repo, check=True, env=env,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        t = time.perf_counter() - t0
        print(f"baseline: git exp push of the {versions} runs to an empty repo: {runs_push:.2f} s")
        print(f"git exp push of the model ({len(events)} commits) after them:        {t:.2f} s")
        clone = os.path.join(tmp, "clone")
        subprocess.run(["git", "clone", "-q", bare, clone], check=True, stderr=subprocess.DEVNULL)
        t0 = time.perf_counter()
        subprocess.run(
            ["git", "exp", "pull", "-q", "--no-artifacts"], cwd=clone, check=True, env=env
        )
        t = time.perf_counter() - t0
        print(f"git exp pull --no-artifacts (runs + model) into a fresh clone: {t:.2f} s")


def timed(cmd: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def compare_bench(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = os.path.join(tmp, "repo")
        generate(repo, n)
        a, b = 'params.opt == "a"', 'params.opt == "b"'
        cold = timed(["git", "exp", "log", "-w", a, "-n", "1"], repo)  # builds the catalog
        base = [timed(["git", "exp", "log", "-w", a, "--csv", "-c", "auc"], repo) for _ in range(3)]
        cmp = [
            timed(["git", "exp", "compare", "-a", a, "-b", b, "-m", "auc"], repo) for _ in range(3)
        ]
        mb, mc = statistics.median(base), statistics.median(cmp)
        half = f"{n // 2:,}"
        print(f"catalog of {n:,} runs built by the first git exp log: {cold:.2f} s")
        print(f"baseline: git exp log -w (one side, {half} rows)  median {mb:.2f} s")
        print(
            f"git exp compare ({half} vs {half} runs, 1 metric)  median {mc:.2f} s ({mc / mb:.1f}x)"
        )
        from gitexp.stats import compare_samples

        rng = random.Random(1)
        xs = [rng.gauss(0.9, 0.01) for _ in range(n // 2)]
        ys = [rng.gauss(0.901, 0.01) for _ in range(n // 2)]
        compare_samples(xs[:10], ys[:10])  # scipy imported
        t0 = time.perf_counter()
        c = compare_samples(xs, ys)
        t = time.perf_counter() - t0
        print(f"the statistics alone (Welch + 9,999 bootstrap resamples): {t:.2f} s; {c.verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10_000)
    args = ap.parse_args()
    print(f"== registry: a model with {args.versions} versions")
    registry_bench(args.versions)
    print(f"== compare over {args.runs:,} runs")
    compare_bench(args.runs)


if __name__ == "__main__":
    main()
