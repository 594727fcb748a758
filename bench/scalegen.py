"""Build repositories of N small runs with git plumbing, fast (for bench_scale.py).

Creating 100,000 runs through the API would take an hour and measure something
else; this writes the very objects ``git exp run`` writes for a small run, in
format version 1, through ``git fast-import``:

- a commit on ``refs/experiments/<experiment>/<run-id>`` whose parent is the
  code commit (HEAD of the project), with the commit message git-exp writes;
- its tree: ``run.json``, ``params.json``, ``summary.json``, ``artifacts.json``
  and ``metrics/000000.parquet`` distinct for every run (a real Parquet segment
  of 3 metrics x 10 steps, the schema ``gitexp.metrics`` writes); ``code.json``
  and ``env.json`` shared, as they are between runs of one checkout;
- with ``artifacts=True``, one 200-byte artifact per run in the local CAS
  (``.git/exp/objects``), named in ``artifacts.json`` by its BLAKE3.

``layout="packed"`` leaves fast-import's pack as it is; ``"loose"`` explodes it
into loose objects (``git unpack-objects``), which is what a repository where
runs were recorded by ``git exp run`` looks like before any gc.

    python bench/scalegen.py DIR --runs 10000 --layout loose
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

from benchlib import IDENTITY, make_repo  # noqa: E402

from gitexp.records import canonical_json  # noqa: E402

SEGMENTS = 10_000  # distinct metric segments; past that they repeat (build time)
T0 = 1795000000  # 2026-11-17: the first run's start


def run_id(i: int, t0: int = T0) -> str:
    """The run id of generated run ``i``: sortable by start, unique."""
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime(t0 + i)) + f"{i:06x}"


def _segments(n: int) -> list[bytes]:
    """``n`` distinct Parquet metric segments (3 keys x 10 steps each)."""
    import numpy as np
    import pyarrow as pa

    from gitexp import metrics

    out = []
    ts = pa.timestamp("us", tz="UTC")
    keys = pa.array(["loss"] * 10 + ["acc"] * 10 + ["val_acc"] * 10, pa.string())
    steps = pa.array(np.tile(np.arange(10, dtype=np.int64), 3))
    for i in range(n):
        values = pa.array(np.linspace(1.0, 0.0, 30) + i * 1e-6)
        times = pa.array(np.full(30, (T0 + i) * 1_000_000, dtype=np.int64)).cast(ts)
        table = pa.Table.from_arrays([keys, steps, values, times], schema=metrics.schema())
        out.append(metrics.to_parquet(table))
    return out


def _blob(out, data: bytes) -> None:
    out.write(b"data %d\n" % len(data))
    out.write(data)
    out.write(b"\n")


def _put_cas(objects: str, data: bytes) -> str:
    """Write ``data`` into a CAS directory the way the store lays it out."""
    from gitexp.cas import hash_bytes

    key = hash_bytes(data)
    d = os.path.join(objects, key[:2])
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, key[2:])
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o444)
    return key


def add_runs(
    path: str,
    n: int,
    experiment: str = "bench",
    start: int = 0,
    artifacts: bool = True,
    layout: str = "packed",
    segments: list[bytes] | None = None,
) -> list[str]:
    """Add runs ``start`` .. ``start + n`` to the repository at ``path``; return their refs."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = subprocess.run(
        ["git", "rev-parse", "HEAD^{tree}"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()
    segs = segments if segments is not None else _segments(min(n, SEGMENTS))
    code = canonical_json(
        {
            "branch": "main",
            "changed": [],
            "commit": head,
            "diff_stat": "",
            "dirty": False,
            "head": head,
            "large_files": [],
            "remotes": {},
            "snapshot": None,
            "tree": tree,
            "unreadable": [],
        }
    )
    env = canonical_json(
        {
            "python": {"implementation": "CPython", "version": "3.11.7"},
            "packages": ["numpy==2.4.6", "pyarrow==26.0.1", "torch==2.9.0"],
            "cpu": {"arch": "x86_64", "count": 2},
        }
    )
    cas = os.path.join(path, ".git", "exp", "objects")
    before = set(glob.glob(os.path.join(path, ".git", "objects", "pack", "*.pack")))
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"],
        cwd=path,
        stdin=subprocess.PIPE,
        env={**os.environ, **IDENTITY},
    )
    out = proc.stdin
    assert out is not None
    out.write(b"blob\nmark :1\n")
    _blob(out, code)
    out.write(b"blob\nmark :2\n")
    _blob(out, env)
    refs = []
    for i in range(start, start + n):
        rid = run_id(i)
        t = T0 + i
        run = {
            "command": ["python", "train.py", "--seed", str(i)],
            "cwd": "/home/bench/project",
            "cwd_rel": ".",
            "duration": 60.0,
            "end_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t + 60)),
            "exit_code": 0 if i % 10 else 1,
            "experiment": experiment,
            "fingerprint": f"{i:064x}",
            "format": 1,
            "heartbeat": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t + 60)),
            "host": "bench",
            "id": rid,
            "links": {},
            "name": None,
            "notes": [],
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t)),
            "status": "finished" if i % 10 else "failed",
            "tags": ["baseline"] if i % 100 == 0 else [],
            "user": "bench",
            "writers": {f"{1000 + i % 7000}-{i:08x}": 1},
        }
        params = {
            "lr": 10 ** -(1 + i % 4),
            "batch": 32 * (1 + i % 3),
            "seed": i,
            "model": {"depth": 2 + i % 5, "width": 64},
        }
        summary = {
            "final": {},
            "metrics": {
                k: {"count": 10, "last": v, "last_step": 9, "last_time": t, "max": 1.0, "min": v}
                for k, v in (("loss", 1 / (i + 1)), ("acc", (i % 1000) / 1000), ("val_acc", 0.5))
            },
        }
        manifest: list[dict[str, object]] = []
        if artifacts:
            data = (f"weights of run {i}\n".encode() * 16)[:200]
            key = _put_cas(cas, data)
            manifest = [
                {
                    "blake3": key,
                    "mode": "100644",
                    "path": "model.bin",
                    "role": "output",
                    "size": 200,
                }
            ]
        ref = f"refs/experiments/{experiment}/{rid}"
        refs.append(ref)
        msg = f"finish {experiment}/{rid}: python train.py --seed {i}\n".encode()
        out.write(f"commit {ref}\n".encode())
        out.write(f"committer bench <bench@example.com> {t + 60} +0000\n".encode())
        out.write(b"data %d\n%s\n" % (len(msg), msg))
        out.write(f"from {head}\n".encode())
        out.write(b"deleteall\n")
        files = (
            ("run.json", canonical_json(run)),
            ("params.json", canonical_json(params)),
            ("summary.json", canonical_json(summary)),
            ("artifacts.json", canonical_json(manifest)),
            ("metrics/000000.parquet", segs[i % len(segs)]),
        )
        for name, data in files:
            out.write(f"M 100644 inline {name}\n".encode())
            _blob(out, data)
        out.write(b"M 100644 :1 code.json\nM 100644 :2 env.json\n\n")
    out.write(b"done\n")
    out.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    if layout == "loose":
        for pack in (
            set(glob.glob(os.path.join(path, ".git", "objects", "pack", "*.pack"))) - before
        ):
            idx = pack[: -len(".pack")] + ".idx"
            aside = pack + ".unpacking"
            os.rename(pack, aside)
            os.unlink(idx)
            with open(aside, "rb") as f:
                subprocess.run(["git", "unpack-objects", "-q"], cwd=path, stdin=f, check=True)
            os.unlink(aside)
    return refs


def make_project(path: str, n: int, layout: str = "packed", artifacts: bool = True) -> None:
    """A new project with ``n`` runs in experiment ``bench``."""
    make_repo(path)
    subprocess.run(["git", "branch", "-q", "-M", "main"], cwd=path, check=True)
    add_runs(path, n, artifacts=artifacts, layout=layout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--layout", choices=["loose", "packed"], default="packed")
    ap.add_argument("--no-artifacts", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    make_project(args.dir, args.runs, args.layout, not args.no_artifacts)
    print(f"{args.runs} runs ({args.layout}) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
