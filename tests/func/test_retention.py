"""Retention (issue 17): ``rm --older-than 90d --unless-tag important`` and
``archive --to REMOTE`` against a real bare remote, checked with ``git fsck --strict``."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import gitexp
from conftest import cas_bytes, fsck, git, run_refs
from gitexp import records as fmt


def _run(repo, experiment: str, tags=(), payload: bytes = b"", age_days: int = 0):
    """A finished run started ``age_days`` ago, with an artifact of ``payload``."""
    real = fmt.utc_now
    fmt.utc_now = lambda: real() - dt.timedelta(days=age_days)
    try:
        with gitexp.start_run(
            experiment=experiment, tags=list(tags), system_metrics=False, command=["t"]
        ) as run:
            run.log_metric("acc", 0.5)
            if payload:
                (repo / "model.bin").write_bytes(payload)
                run.log_artifact(repo / "model.bin")
    finally:
        fmt.utc_now = real
    return run


@pytest.fixture
def aged(repo):
    """Two runs 100 and 120 days old, one 100 days old tagged important, one from today."""
    old = _run(repo, "m", payload=b"old weights " * 1000, age_days=100)
    keep = _run(repo, "m", ["important"], b"kept weights", age_days=100)
    old2 = _run(repo, "n", payload=b"other old " * 500, age_days=120)
    new = _run(repo, "m", payload=b"new weights")
    return {"old": old, "keep": keep, "old2": old2, "new": new}


def _ids(gx) -> set[str]:
    return {r["id"] for r in json.loads(gx.ok("log", "--json"))}


@pytest.mark.slow
def test_rm_older_than_90d_unless_tag_important(repo, gx, aged):
    args = ["rm", "--older-than", "90d", "--unless-tag", "important"]
    dry = gx.ok(*args, "--dry-run")
    assert sorted(dry.split()) == sorted(
        ["would", "remove", f"m/{aged['old'].id}", "would", "remove", f"n/{aged['old2'].id}"]
    )
    assert len(run_refs(repo)) == 4  # a dry run removes nothing
    assert gx.ok("rm", "--older-than", "3mo", "--unless-tag", "important", "--dry-run") == dry
    gx.ok(*args)
    assert _ids(gx) == {aged["keep"].id, aged["new"].id}
    proc = gx("rm", "--older-than", "3 months")
    assert proc.returncode == 2 and "mo" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_archive_moves_runs_to_a_bare_remote_and_pull_brings_them_back(repo, gx, aged, tmp_path):
    bare = tmp_path / "archive.git"
    git("init", "-q", "--bare", str(bare))
    git("remote", "add", "archive", str(bare), cwd=repo)
    args = ["archive", "--to", "archive", "--older-than", "90d", "--unless-tag", "important"]
    dry = gx.ok(*args, "--dry-run")
    assert sorted(dry.split()) == sorted(
        f"would archive m/{aged['old'].id} would archive n/{aged['old2'].id}".split()
    )
    assert git("for-each-ref", cwd=bare) == ""  # a dry run pushes nothing
    before = cas_bytes(repo)
    shas = {k: r.sha for k, r in aged.items()}
    out = gx.ok(*args)
    assert sorted(out.split()) == sorted(
        f"archived m/{aged['old'].id} archived n/{aged['old2'].id}".split()
    )
    # here: gone; there: the refs at the commits pushed, and the artifact bytes
    assert _ids(gx) == {aged["keep"].id, aged["new"].id}
    remote_refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)
    for key in ("old", "old2"):
        assert f"{aged[key].ref} {shas[key]}" in remote_refs
    fsck(bare)
    listed = gx.ok("ls-remote", "archive")
    assert aged["old"].id in listed and aged["old2"].id in listed and "absent" in listed
    gx.ok("gc", "--grace", "0s", "--no-pack")
    assert cas_bytes(repo) < before  # the archived runs' own artifacts freed here
    # and back
    gx.ok("pull", "archive")
    assert _ids(gx) == {r.id for r in aged.values()}
    assert "ok" in gx.ok("fsck", aged["old"].id)  # its artifact bytes came back, verified
    fsck(repo)
    # nothing is archived twice: the runs are here again and the same on the remote
    again = gx.ok("archive", "--to", "archive", aged["old"].id)
    assert again.strip() == f"archived m/{aged['old'].id}"


@pytest.mark.slow
def test_archive_deletes_nothing_when_the_remote_cannot_hold_the_runs(repo, gx, aged, git_daemon):
    """A remote without an artifact store would lose the bytes, and an unreachable
    one holds nothing: every run stays."""
    before = run_refs(repo)
    git("init", "-q", "--bare", str(git_daemon.base / "archive-nostore.git"))
    proc = gx("archive", "--to", git_daemon.url("archive-nostore.git"), "--older-than", "90d")
    assert proc.returncode == 10, proc.stderr
    assert "no artifact store" in proc.stderr and "nothing was archived" in proc.stderr
    assert git("for-each-ref", cwd=git_daemon.base / "archive-nostore.git") == ""
    proc = gx("archive", "--to", str(repo.parent / "no-such.git"), aged["old"].id)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert run_refs(repo) == before
    proc = gx("archive", "--to", "archive")
    assert proc.returncode == 2 and "name the runs" in proc.stderr
    live = gitexp.start_run(experiment="live", system_metrics=False)
    live.checkpoint()  # its ref exists: a run in progress
    try:
        proc = gx("archive", "--to", str(repo.parent / "no-such.git"), live.id)
        assert proc.returncode == 7 and "still running" in proc.stderr
    finally:
        live.finish()
