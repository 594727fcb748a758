"""What the framework-integration tests share: the framework or a skip (a failure
under GITEXP_REQUIRE_SERVERS=1, as CI sets it), a run read back, artifacts restored."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from conftest import git, run_refs
from servers import require


def need(module: str, extra: str) -> ModuleType:
    """Import a framework; skip (fail in CI) when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        require(False, f"{module} (pip install 'git-exp[{extra}]'): {exc}")
        raise  # not reached: require skipped or failed


def recorded(repo: Path, ref: str):
    """(the run's record, {metric key: (steps, values)})."""
    from gitexp.metrics import series
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        rec = store.read(store.resolve(ref))
        table = store.read_metrics(rec)
    keys = set(rec.summary.metrics)
    return rec, {k: series(table, k) for k in keys if k in set(table.column("key").to_pylist())}


def restore(repo: Path, ref: str, name: str, dest: Path) -> Path:
    """Restore artifact ``name`` of a run (BLAKE3-verified) to ``dest``."""
    from gitexp.remotes import get
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        get(store, ref, name, str(dest))
    return dest


def artifact_names(rec) -> list[str]:
    return sorted(a.path for a in rec.artifacts if a.role == "output")


def under_git_exp_run(repo: Path, script: str, *args: str, env: dict | None = None) -> str:
    """Commit ``script`` as train.py and run it with ``git exp run``; return the run's ref."""
    (repo / "train.py").write_text(textwrap.dedent(script))
    git("add", "train.py", cwd=repo)
    git("commit", "-qm", "training script", cwd=repo)
    before = set(run_refs(repo))
    import os

    proc = subprocess.run(
        ["git", "exp", "run", "-e", "fw", *args, "--", sys.executable, "train.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (ref,) = set(run_refs(repo)) - before
    return ref
