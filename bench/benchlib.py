"""What the benchmark scripts share."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def make_repo(path: str, files: dict[str, str] | None = None) -> str:
    """A git repository at ``path`` with one commit of ``files``; returns HEAD's sha."""
    env = {**os.environ, **IDENTITY}
    subprocess.run(["git", "init", "-q", path], check=True)
    for name, text in (files or {"train.py": "print('hi')\n"}).items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()


def run_values(i: int) -> tuple[dict[str, Any], dict[str, float]]:
    """The params and last metrics of generated run number ``i`` (the same for
    every tool a benchmark compares)."""
    params = {
        "lr": 10 ** -(1 + i % 4),
        "batch": 32 * (1 + i % 3),
        "seed": i,
        "model": {"depth": 2 + i % 5, "width": 64},
        "opt": "adam",
    }
    metrics = {"loss": 1 / (i + 1), "acc": (i % 1000) / 1000, "val_acc": (i % 997) / 997}
    return params, metrics


def _blob(out: Any, data: bytes) -> None:
    out.write(b"data %d\n" % len(data))
    out.write(data)
    out.write(b"\n")


def generate(path: str, n: int, experiment: str = "bench") -> None:
    """A repository at ``path`` with ``n`` finished runs in format version 1
    (params and last metrics of :func:`run_values`, no metric segments), written
    with ``git fast-import``: creating 100,000 runs through the API would take
    minutes and measure something else."""
    from gitexp.records import canonical_json

    head = make_repo(path)
    code = canonical_json({"commit": head, "head": head, "tree": "0" * 40, "dirty": False})
    env = canonical_json({"python": {"version": "3.11.7"}, "packages": ["numpy==2.4.6"]})
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=path, stdin=subprocess.PIPE)
    out = proc.stdin
    assert out is not None
    out.write(b"blob\nmark :1\n")
    _blob(out, code)
    out.write(b"blob\nmark :2\n")
    _blob(out, env)
    out.write(b"blob\nmark :3\n")
    _blob(out, b"[]\n")
    t = 1795000000
    for i in range(n):
        run_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime(t + i)) + f"{i:06x}"
        run = {
            "format": 1,
            "id": run_id,
            "experiment": experiment,
            "name": f"run {i}",
            "status": "finished" if i % 10 else "failed",
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + i)),
            "end_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + i + 60)),
            "duration": 60.0,
            "command": ["python", "train.py"],
            "exit_code": 0,
            "tags": ["baseline"] if i % 100 == 0 else [],
            "notes": [],
            "links": {},
            "writers": {},
            "host": "bench",
            "user": "bench",
            "fingerprint": f"{i:064x}",
        }
        params, last = run_values(i)
        summary = {
            "metrics": {
                k: {
                    "last": v,
                    "last_step": 99,
                    "last_time": t + i,
                    "min": v,
                    "max": v,
                    "count": 100,
                }
                for k, v in last.items()
            },
            "final": {},
        }
        out.write(f"commit refs/experiments/{experiment}/{run_id}\n".encode())
        out.write(f"committer b <b@b> {t + i} +0000\n".encode())
        msg = f"finish {experiment}/{run_id}\n".encode()
        out.write(b"data %d\n%s\n" % (len(msg), msg))
        out.write(f"from {head}\n".encode())
        out.write(b"deleteall\n")
        for name, data in (("run.json", run), ("params.json", params), ("summary.json", summary)):
            out.write(f"M 100644 inline {name}\n".encode())
            _blob(out, canonical_json(data))
        out.write(b"M 100644 :1 code.json\nM 100644 :2 env.json\nM 100644 :3 artifacts.json\n\n")
    out.close()
    assert proc.wait() == 0
