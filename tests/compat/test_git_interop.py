"""Our objects and refs, seen by the real git binary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import GitExp, fsck, git, run_refs


def _history(gx, repo):
    """A realistic sequence of commands: clean, dirty, failing, crashing runs."""
    gx.ok(
        "run",
        "-q",
        "-e",
        "interop",
        "-n",
        "clean",
        "-p",
        "note=first",
        "--",
        sys.executable,
        "train.py",
        "--epochs",
        "2",
        "--lr",
        "0.1",
    )
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# dirty edit\n")
    (repo / "extra.py").write_text("X = 1\n")
    gx.ok(
        "run",
        "-q",
        "-e",
        "interop",
        "-p",
        "lr=0.2",
        "--tag",
        "dirty",
        "--",
        sys.executable,
        "train.py",
        "--epochs",
        "2",
        "--lr",
        "0.2",
    )
    assert gx("run", "-q", "-e", "interop/fail", "--", "false").returncode == 1
    (repo / "crash.py").write_text(
        "import os, signal, gitexp\nr = gitexp.start_run()\nr.log_metric('m', 1)\n"
        "r.checkpoint()\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    # a process that dies outside `git exp run` after its run reached its ref: the next
    # reader here settles it as crashed; a clone sees it as the origin left it
    proc = subprocess.run([sys.executable, "crash.py"], cwd=repo)
    assert proc.returncode == -9
    return run_refs(repo)


@pytest.mark.slow
def test_plain_git_reads_runs_and_a_clone_fetches_them(gx, repo, tmp_path):
    """One history (building it costs seconds), checked twice: in place, then in a clone."""
    history = _history(gx, repo)
    clone = _clone_and_fetch_before_the_origin_reads(repo, history, tmp_path)
    _check_with_plain_git(gx, repo, history)
    _fetch_again_and_read(gx, clone)


def _check_with_plain_git(gx, repo, history):
    assert len(history) == 4
    fsck(repo)
    rows = json.loads(gx.ok("log", "--json"))  # settles the crashed run: a new commit
    assert sorted(r["status"] for r in rows) == ["crashed", "failed", "finished", "finished"]
    fsck(repo)
    listing = git(
        "for-each-ref",
        "--format=%(refname) %(objecttype) %(subject)",
        "refs/experiments/",
        cwd=repo,
    ).splitlines()
    assert len(listing) == 4
    for line in listing:
        ref, kind, subject = line.split(" ", 2)
        assert kind == "commit"
        short = ref.removeprefix("refs/experiments/")
        assert short in subject and subject.split()[0] in ("finish", "crash")
    assert sum(" crash " in f" {ln} " for ln in listing) == 1
    clean = next(r for r in history if git("show", f"{r}:run.json", cwd=repo).count('"clean"'))
    log = git("log", "--format=%s%n%b", clean, "-n", "5", cwd=repo)
    assert "finish interop/" in log and "start interop/" in log
    assert "status: finished (exit 0)" in log and "params: " in log and "lr=0.1" in log
    assert "metrics: accuracy=" in log
    assert json.loads(git("show", f"{clean}:params.json", cwd=repo))["lr"] == 0.1
    tree = git("ls-tree", "-r", "--name-only", clean, cwd=repo).split()
    assert {
        "run.json",
        "params.json",
        "summary.json",
        "artifacts.json",
        "env.json",
        "code.json",
    } <= set(tree)
    assert any(p.startswith("metrics/") and p.endswith(".parquet") for p in tree)
    # plain git diff between two runs' params works on the canonical JSON
    other = next(r for r in history if r != clean and "/interop/" in r and r.count("/") == 3)
    diff = git("diff", clean, other, "--", "params.json", cwd=repo)
    assert '-  "lr": 0.1' in diff and '+  "lr": 0.2' in diff
    # the run's history reaches the code commit, so pushing the run pushes the code
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert git("merge-base", "--is-ancestor", head, clean, cwd=repo) == ""
    # the user's branches are untouched by all of it
    assert git("for-each-ref", "--format=%(refname)", "refs/heads/", cwd=repo).split() == [
        "refs/heads/main"
    ]
    # after git's own gc (packed objects, packed refs) everything still reads
    git("gc", "-q", cwd=repo)
    fsck(repo)
    after = json.loads(gx.ok("log", "--json"))
    assert after == rows
    assert json.loads(gx.ok("show", "--json", rows[0]["id"]))["ref"] == rows[0]["ref"]


def _clone_and_fetch_before_the_origin_reads(repo, history, tmp_path):
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone))
    assert run_refs(clone) == []  # a plain clone does not fetch runs
    git("fetch", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=clone)
    assert run_refs(clone) == history
    fsck(clone)
    fetched = dict(
        line.split()
        for line in git(
            "for-each-ref", "--format=%(refname) %(objectname)", "refs/experiments/", cwd=clone
        ).splitlines()
    )
    other = GitExp(clone)
    rows = json.loads(other.ok("log", "--json"))
    assert sorted(r["ref"] for r in rows) == sorted(history)
    # the crashed run was started in the origin: the clone does not rewrite it
    assert sorted(r["status"] for r in rows) == ["failed", "finished", "finished", "running"]
    for r in rows:
        assert r["sha"] == fetched[r["ref"]]  # reading did not rewrite anything
    return clone


def _fetch_again_and_read(gx, clone):
    # the origin has settled the crashed run by now: a plain (non-forced) fetch
    # fast-forwards the clone to it
    other = GitExp(clone)
    git("fetch", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=clone)
    rows = json.loads(other.ok("log", "--json"))
    assert sorted(r["status"] for r in rows) == ["crashed", "failed", "finished", "finished"]
    fsck(clone)
    first = rows[-1]["id"]
    shown = json.loads(other.ok("show", "--json", first))
    assert shown == json.loads(gx.ok("show", "--json", first))
    dirty = next(
        r
        for r in rows
        if "dirty" in json.loads(other.ok("show", "--json", r["id"]))["info"]["tags"]
    )
    out = other.ok("diff", "--code", rows[-1]["id"], dirty["id"])
    assert "+# dirty edit" in out  # the snapshot commit travelled with the run
