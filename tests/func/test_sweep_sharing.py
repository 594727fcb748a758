"""Sweep records (``refs/sweeps/<id>``) travel with a whole push and pull, checked
as runs are: a teammate who pulls a sweep's trials gets the sweep too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import gitexp
from conftest import GitExp, fsck, git
from servers import bare


def sweep_refs(repo: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/sweeps/", cwd=repo)
    return dict(line.split() for line in out.splitlines())


def _sweep(repo: Path) -> str:
    def fn(params, budget, run):
        run.log_metric("loss", (params["x"] - 2) ** 2, step=0)
        return (params["x"] - 2) ** 2

    best = gitexp.sweep(
        fn, {"x": {"values": [1, 2]}}, method="grid", metric="loss", experiment="tune", repo=repo
    )
    assert best is not None
    return str(best["sweep"])


def _plumbed(remote: Path, ref: str, sweep_json: dict | None) -> None:
    """A ref under refs/sweeps/ on the remote: a blob (None), or a commit of that document."""

    def run_git(*args: str, data: str = "") -> str:
        return subprocess.run(
            ["git", *args], cwd=remote, input=data, capture_output=True, text=True, check=True
        ).stdout.strip()

    if sweep_json is None:
        run_git("update-ref", ref, run_git("hash-object", "-w", "--stdin", data="x"))
        return
    blob = run_git("hash-object", "-w", "--stdin", data=json.dumps(sweep_json))
    tree = run_git("mktree", data=f"100644 blob {blob}\tsweep.json\n")
    run_git("update-ref", ref, run_git("commit-tree", tree, "-m", "a sweep from elsewhere"))


def test_a_sweep_travels_with_a_whole_push_and_pull(repo, tmp_path):
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=repo)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=repo)
    sweep_id = _sweep(repo)
    ref = f"refs/sweeps/{sweep_id}"
    out = GitExp(repo).ok("push")
    assert "sweeps: 1 new" in out
    assert sweep_refs(remote) == sweep_refs(repo)
    assert "sweeps: 1 up to date" in GitExp(repo).ok("push")

    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    bx = GitExp(bob)
    # a partial pull brings runs only
    bx.ok("pull", "-e", "tune")
    assert sweep_refs(bob) == {}
    out = bx.ok("pull")
    assert "sweeps: 1 new" in out
    assert sweep_refs(bob) == {ref: sweep_refs(repo)[ref]}
    shown = bx.ok("sweep", "show", sweep_id)
    assert sweep_id in shown and "finished" in shown
    assert sweep_id in bx.ok("sweep", "list")
    fsck(bob)


def test_a_sweep_ref_no_reader_can_read_is_refused_and_the_others_taken(repo, tmp_path):
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=repo)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=repo)
    good = _sweep(repo)
    GitExp(repo).ok("push")
    bad = {
        "refs/sweeps/20260101-000000-aaaaaa": (None, "not a commit"),
        "refs/sweeps/20260101-000000-bbbbbb": ({"format": 2}, "sweep format 2"),
        "refs/sweeps/20260101-000000-cccccc": ([1, 2], "not an object"),
        "refs/sweeps/not-an-id": ({"format": 1}, "not a sweep id"),
    }
    for ref, (doc, _) in bad.items():
        _plumbed(remote, ref, doc)
    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    proc = GitExp(bob)("pull")
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for ref, (_, why) in bad.items():
        line = next(x for x in proc.stderr.splitlines() if ref in x)
        assert why in line, line
    assert list(sweep_refs(bob)) == [f"refs/sweeps/{good}"]
    assert good in GitExp(bob).ok("sweep", "list")
