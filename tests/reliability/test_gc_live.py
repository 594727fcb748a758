"""gc beside runs in progress (issue 19 item 3): it never frees an object a live
run has put in the store, however short the grace; and it sees every commit of a
run, however long its history."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from conftest import git

WRITER = r"""
import os, sys, time
import gitexp
for i in range(int(sys.argv[2])):
    path = os.path.join(sys.argv[3], f"art-{sys.argv[1]}-{i}.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(2048))
    with gitexp.start_run(experiment="gcrace", command=["w"]) as run:
        run.log_artifact(path)
        time.sleep(0.05)
        run.log_metric("x", i)
"""
WRITERS, RUNS = 5, 10


@pytest.mark.slow
def test_gc_with_grace_zero_beside_concurrent_writers_frees_nothing_they_hold(repo, gx, tmp_path):
    arts = tmp_path / "arts"  # outside the work tree: its snapshot stays the same
    arts.mkdir()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w), str(RUNS), str(arts)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    log = subprocess.Popen(["sh", "-c", "while :; do git exp log >/dev/null 2>&1; done"], cwd=repo)
    loops = 0
    try:
        while any(p.poll() is None for p in writers):
            proc = gx("gc", "--grace", "0s", "--no-pack")
            assert proc.returncode == 0, proc.stderr
            loops += 1
    finally:
        log.kill()
        log.wait()
    for p in writers:
        _, err = p.communicate()
        assert p.returncode == 0, err
    assert loops >= 2
    fsck = gx("fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    refs = git("for-each-ref", "refs/experiments/gcrace/", cwd=repo).splitlines()
    assert len(refs) == WRITERS * RUNS


def test_gc_keeps_an_object_a_live_run_put_before_recording_it(repo, gx):
    """A writer stores an object a moment before its spool names it: gc with no
    grace, right in that moment, keeps it; once no run is in progress, it frees it."""
    import gitexp
    from gitexp.store import ExpStore

    with gitexp.start_run(experiment="live", command=["t"]):
        with ExpStore(repo) as store:
            key = store.cas.put_bytes(b"not named by any spool entry or ref yet")
            path = store.cas.path_for(key)
        old = time.time() - 5  # older than gc, whatever the clock granularity
        os.utime(path, (old, old))
        out = gx.ok("gc", "--grace", "0s", "--no-pack")
        assert os.path.exists(path), out
    out = gx.ok("gc", "--grace", "0s", "--no-pack")
    assert not os.path.exists(path), out
    assert "freed 1 object" in out


def _long_history(repo, ref: str, commits: int) -> str:
    """Put ``commits`` commits on ``ref`` (git fast-import): the first without the
    artifacts of the run's first commit, the others on top; return the first sha."""
    first = git("rev-parse", ref, cwd=repo).strip()
    assert "artifacts.json" in git("ls-tree", first, cwd=repo)
    empty = git("hash-object", "-w", "--stdin", cwd=repo, input="[]").strip()
    lines = []
    for i in range(commits):
        lines += [f"commit {ref}", f"committer T <t@e> {1700000000 + i} +0000", "data 2", "c"]
        if i == 0:
            lines += [f"from {first}", f"M 100644 {empty} artifacts.json"]
        lines.append("")
    subprocess.run(
        ["git", "fast-import", "--quiet", "--force"],
        cwd=repo,
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
    )
    return first


@pytest.mark.slow
def test_gc_and_sha_prefixes_see_past_ten_thousand_commits(repo, gx):
    import gitexp
    from gitexp.store import ExpStore

    (repo / "model.bin").write_bytes(os.urandom(4096))
    with gitexp.start_run(experiment="long", command=["t"]) as run:
        run.log_artifact(str(repo / "model.bin"))
        ref = run.ref
    first = _long_history(repo, ref, 10_050)
    objects = repo / ".git" / "exp" / "objects"
    before = sorted(p.name for p in objects.rglob("*") if p.is_file())
    assert before
    gx.ok("gc", "--grace", "0s", "--no-pack")
    assert sorted(p.name for p in objects.rglob("*") if p.is_file()) == before
    with ExpStore(repo) as store:
        assert str(store.resolve(first[:12])) == ref
        assert len(store.history(git("rev-parse", ref, cwd=repo).strip())) == 10_000
