"""The README quickstart, end to end through the real ``git exp`` command."""

from __future__ import annotations

import json

import pytest

from conftest import fsck, git


@pytest.mark.slow
def test_quickstart_records_a_real_training_run(gx, repo):
    out = gx("run", "-e", "example", "--", "python", "train.py", "--epochs", "4", "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert "epoch   3" in out.stdout  # the child's output reached the terminal
    refs = git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=repo).split()
    assert len(refs) == 1 and refs[0].startswith("refs/experiments/example/")
    params = json.loads(git("show", f"{refs[0]}:params.json", cwd=repo))
    assert params["epochs"] == 4 and params["seed"] == 1
    board = json.loads(gx.ok("log", "--json"))
    assert board[0]["status"] == "finished"
    assert 0.0 < board[0]["metrics.accuracy"] <= 1.0
    fsck(repo)
