"""Concurrency: parallel writers, racing edits, and readers during writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import gitexp
from conftest import fsck, git
from gitexp.store import ExpStore

WRITER = r"""
import os, sys, gitexp
n, tag = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    with gitexp.start_run(experiment="shared", params={"proc": tag, "i": i}) as run:
        for step in range(20):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 20}, step=step)
        with open(f"art-{tag}.bin", "wb") as f:
            f.write(b"same bytes in every run" * 50)
        run.log_artifact(f"art-{tag}.bin", name="model.bin")
"""


@pytest.mark.slow
def test_eight_processes_create_800_complete_runs(repo):
    (repo / "writer.py").write_text(WRITER)
    git("add", "writer.py", cwd=repo)
    git("commit", "-qm", "writer", cwd=repo)
    t0 = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, "writer.py", "100", f"p{k}"], cwd=repo, stderr=subprocess.PIPE
        )
        for k in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    elapsed = time.time() - t0
    print(f"8 x 100 runs in {elapsed:.1f} s")
    with ExpStore(repo) as store:
        records = list(store.iter_records("shared"))
    assert len(records) == 800
    assert {(r.params["proc"], r.params["i"]) for r in records} == {
        (f"p{k}", i) for k in range(8) for i in range(100)
    }
    for r in records:
        assert r.status == "finished"
        assert r.summary.metrics["loss"].count == 20
        assert [a.path for a in r.artifacts] == ["model.bin"]
    # the artifact's bytes are stored once, whatever the number of runs
    objects = list((repo / ".git" / "exp" / "objects").rglob("*"))
    assert len([p for p in objects if p.is_file()]) == 1
    fsck(repo)


@pytest.mark.slow
def test_parallel_git_exp_run_each_record_the_work_tree(repo, gx):
    (repo / "notes.txt").write_text("uncommitted\n")
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# edited\n")
    index_before = (repo / ".git" / "index").read_bytes()
    status_before = git("status", "--porcelain", cwd=repo)
    procs = [
        subprocess.Popen(
            ["git", "exp", "run", "-e", "par", "--", sys.executable, "-c", "print('hello')"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err.decode()
    # the tree git itself would snapshot: stage everything in a throwaway index
    env = {"GIT_INDEX_FILE": str(repo / ".git" / "tmp-index")}
    git("read-tree", "HEAD", cwd=repo, env=env)
    git("add", "-A", cwd=repo, env=env)
    expected = git("write-tree", cwd=repo, env=env).strip()
    os.unlink(repo / ".git" / "tmp-index")
    with ExpStore(repo) as store:
        records = list(store.iter_records("par"))
    assert len(records) == 4
    for r in records:
        assert r.code["dirty"] is True
        assert r.code["tree"] == expected
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert git("status", "--porcelain", cwd=repo) == status_before
    fsck(repo)


@pytest.mark.slow
def test_tag_edits_racing_with_a_finishing_run_are_never_lost(repo, gx):
    run = gitexp.start_run(experiment="race", repo=repo)
    for i in range(200):
        run.log_metric("x", i)
    tags = [f"t{i}" for i in range(12)]

    def tagger(chunk):
        for t in chunk:
            proc = gx("tag", run.id, t)
            assert proc.returncode == 0, proc.stderr

    threads = [threading.Thread(target=tagger, args=(tags[k::3],)) for k in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        run.checkpoint()
    run.finish()
    for t in threads:
        t.join()
    with ExpStore(repo) as store:
        rec = store.read_settled(run.id)
    assert rec.status == "finished"
    assert set(tags) <= set(rec.tags)
    assert rec.summary.metrics["x"].count == 200
    fsck(repo)


@pytest.mark.slow
def test_readers_never_see_half_written_runs(repo, gx):
    (repo / "writer.py").write_text(WRITER)
    writer = subprocess.Popen(
        [sys.executable, "writer.py", "40", "w"], cwd=repo, stderr=subprocess.PIPE
    )
    seen = 0
    try:
        while writer.poll() is None:
            proc = gx("log", "--json", "-e", "shared")
            assert proc.returncode == 0, proc.stderr
            assert "warning" not in proc.stderr
            rows = json.loads(proc.stdout) if proc.stdout.strip() else []
            for row in rows:
                assert row["status"] in ("running", "finished")
            seen = max(seen, len(rows))
            if len(rows) >= 2:  # the newest run may be mid-write: show and diff it
                shown = gx("show", "--json", rows[0]["id"])
                assert shown.returncode == 0 and "warning" not in shown.stderr, shown.stderr
                rec = json.loads(shown.stdout)
                assert rec["info"]["status"] in ("running", "finished")
                assert rec["params"]["proc"] == "w"  # a started run is whole, never half
                diff = gx("diff", "--json", rows[0]["id"], rows[1]["id"])
                assert diff.returncode == 0, diff.stderr
    finally:
        writer.communicate(timeout=120)
    assert writer.returncode == 0
    assert len(json.loads(gx.ok("log", "--json", "-e", "shared"))) == 40
