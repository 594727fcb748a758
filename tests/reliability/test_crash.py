"""Crashes: a killed training process keeps what it logged, and shows as crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import gitexp
from conftest import fsck, git
from gitexp.store import ExpStore

TRAINER = r"""
import sys, time, gitexp
run = gitexp.start_run(experiment="crash", params={"lr": 0.1, "nested": {"depth": 3}})
with open("model.bin", "wb") as f:
    f.write(b"weights" * 1000)
run.log_artifact("model.bin")
with open(sys.argv[1], "w") as marks:
    marks.write("artifact\n"); marks.flush()
    i = 0
    while True:
        run.log_metric("loss", 1.0 / (i + 1), step=i)
        if i % 20 == 0:
            marks.write(f"{i} {time.time()}\n"); marks.flush()
        i += 1
        time.sleep(0.0005)
"""


def _start_trainer(repo, marks):
    script = repo / "trainer.py"
    script.write_text(TRAINER)
    return subprocess.Popen(
        [sys.executable, str(script), str(marks)], cwd=repo, start_new_session=True
    )


def _wait_for(path, predicate, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and predicate(path.read_text()):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {path}")


def _marks(text):
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.append((int(parts[0]), float(parts[1])))
    return out


def test_sigkill_keeps_points_params_and_artifacts_and_shows_crashed(repo, gx, tmp_path):
    marks = tmp_path / "marks"
    proc = _start_trainer(repo, marks)
    _wait_for(marks, lambda t: len(_marks(t)) > 0 and _marks(t)[-1][1] - _marks(t)[0][1] > 2.0)
    killed_at = time.time()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # every point logged more than 1 s before the kill must survive
    must_have = max(step for step, t in _marks(marks.read_text()) if t < killed_at - 1.0)

    out = json.loads(gx.ok("log", "--json", "-e", "crash"))
    assert len(out) == 1 and out[0]["status"] == "crashed"
    with ExpStore(repo) as store:
        rec = store.get(out[0]["id"])
        table = store.read_metrics(rec)
        steps = sorted(table.column("step").to_pylist())
    assert steps[: must_have + 1] == list(range(must_have + 1)), "points were lost"
    assert rec.params == {"lr": 0.1, "nested": {"depth": 3}}
    assert [a.path for a in rec.artifacts if a.role == "output"] == ["model.bin"]
    assert rec.info["end_time"] is not None
    # the spool is gone once the run is finalised, and the result is ordinary git
    assert not (repo / ".git" / "exp" / "live" / rec.run_id).exists()
    fsck(repo)
    assert "crash " in git("log", "-1", "--format=%s", str(rec.ref), cwd=repo)


def test_killed_git_exp_run_leaves_the_same_state(repo, gx, tmp_path):
    marks = tmp_path / "marks"
    (repo / "trainer.py").write_text(TRAINER)
    proc = subprocess.Popen(
        ["git", "exp", "run", "-e", "crash", "--", sys.executable, "trainer.py", str(marks)],
        cwd=repo,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(marks, lambda t: len(_marks(t)) > 5 and _marks(t)[-1][1] - _marks(t)[0][1] > 1.5)
    os.killpg(proc.pid, signal.SIGKILL)  # git exp run and its child, at once
    proc.wait()
    time.sleep(0.2)
    out = json.loads(gx.ok("log", "--json", "-e", "crash"))
    assert len(out) == 1 and out[0]["status"] == "crashed"
    assert out[0]["metrics.loss"] > 0
    fsck(repo)


def test_a_live_run_is_not_declared_crashed(repo, gx, tmp_path):
    marks = tmp_path / "marks"
    proc = _start_trainer(repo, marks)
    try:
        _wait_for(marks, lambda t: len(_marks(t)) > 3)
        out = json.loads(gx.ok("log", "--json", "-e", "crash"))
        assert out[0]["status"] == "running"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_long_runs_checkpoint_less_often():
    from gitexp.tracking import checkpoint_interval

    # a simulated 10-hour run: count the commits the schedule makes
    t, commits = 0.0, 0
    while t < 10 * 3600:
        t += checkpoint_interval(t)
        commits += 1
    assert commits < 400  # each commit writes at most ~7 objects: a few thousand objects
    assert checkpoint_interval(0) <= 5.0


def test_many_checkpoints_stay_small(repo):
    """200 checkpoints of a run cost a bounded number of objects and bytes of history."""
    run = gitexp.start_run(experiment="long", repo=repo)
    for i in range(200):
        for k in range(20):
            run.log_metric(f"m{k}", float(i), step=i)
        run.checkpoint()
    run.finish()
    count = git("count-objects", "-v", cwd=repo)
    fields = dict(line.split(": ") for line in count.strip().splitlines())
    objects = int(fields["count"]) + int(fields["in-pack"])
    assert objects < 200 * 8 + 100
    git("gc", "-q", cwd=repo)
    packed = int(
        dict(
            line.split(": ") for line in git("count-objects", "-v", cwd=repo).strip().splitlines()
        )["size-pack"]
    )
    assert packed < 3 * 1024  # KiB: a few MB at most, metric data included
    fsck(repo)


def test_child_writer_spool_is_taken_in_when_the_child_dies(repo, gx):
    """A script killed under `git exp run` still gets its spooled points into the run."""
    (repo / "die.py").write_text(
        "import os, signal, time, gitexp\n"
        "run = gitexp.start_run()\n"
        "for i in range(50):\n    run.log_metric('x', i)\n"
        "run.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = gx("run", "-e", "die", "--", sys.executable, "die.py")
    assert proc.returncode == 128 + 9
    out = json.loads(gx.ok("log", "--json", "-e", "die"))
    assert out[0]["status"] == "killed"
    assert out[0]["metrics.x"] == 49.0
