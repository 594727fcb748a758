"""Background packing (issue 18): ``git gc --auto`` started by git-exp itself
while runs are written and read never loses, blocks or breaks anything."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest

from conftest import fsck, git

WRITER = r"""
import os, sys
import gitexp
for i in range(int(sys.argv[2])):
    path = os.path.join(sys.argv[3], f"art-{sys.argv[1]}-{i}.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(1024))
    params = {"w": sys.argv[1], "i": i}
    with gitexp.start_run(experiment="pack", command=["w"], params=params) as run:
        for step in range(3):
            run.log_metric("loss", 1.0 / (1 + step), step=step)
            run.checkpoint()
        run.log_artifact(path)
"""
WRITERS, RUNS = 4, 8


@pytest.mark.slow
def test_runs_written_and_listed_while_background_gc_packs_them_all_arrive_whole(
    repo, gx, tmp_path
):
    # thresholds so low that every run's commit starts a background gc: git (and
    # git-exp) estimate loose objects from objects/17/, where an unreachable blob
    # (never packed, pruned only after two weeks) keeps the estimate at 256
    git("config", "gc.auto", "1", cwd=repo)
    git("config", "gc.autoPackLimit", "1", cwd=repo)
    seed = next(
        data
        for i in range(100_000)
        if hashlib.sha1(b"blob %d\0" % len(data := b"seed %d" % i) + data).hexdigest()[:2] == "17"
    )
    git("hash-object", "-w", "--stdin", cwd=repo, input=seed.decode())
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
    reader = subprocess.Popen(
        ["sh", "-c", "while :; do git exp log >/dev/null || echo FAIL; done"],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    packs = repo / ".git" / "objects" / "pack"
    packed_while_writing = False
    try:
        while any(p.poll() is None for p in writers):
            # packs come from gc alone here (nothing is fetched)
            packed_while_writing = packed_while_writing or any(packs.glob("*.pack"))
            time.sleep(0.02)
    finally:
        reader.kill()
        out, _ = reader.communicate()
    for p in writers:
        _, err = p.communicate()
        assert p.returncode == 0, err
    assert "FAIL" not in out
    end = time.monotonic() + 60
    while (repo / ".git" / "gc.pid").exists() and time.monotonic() < end:
        time.sleep(0.1)
    assert packed_while_writing, "no background gc packed while the runs were written"
    assert "packed-refs" in {p.name for p in (repo / ".git").iterdir()}
    fsck(repo)
    check = gx("fsck")
    assert check.returncode == 0, check.stdout + check.stderr
    refs = git("for-each-ref", "refs/experiments/pack/", cwd=repo).splitlines()
    assert len(refs) == WRITERS * RUNS
    assert gx.ok("log", "-e", "pack", "--json").count('"status": "finished"') == WRITERS * RUNS
