"""Crashes: a killed training process keeps what it logged, and shows as crashed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import gitexp
from conftest import fsck, git, kill_when_ready, run_refs
from gitexp.store import ExpStore

TRAINER = r"""
import sys, time, gitexp, gitexp.tracking
if sys.argv[2:] == ["early"]:  # killed before the run's first commit (its ref), surely
    gitexp.tracking.FIRST_COMMIT_DELAY = 3600
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


def _start_trainer(repo, marks, early=False):
    script = repo / "trainer.py"
    script.write_text(TRAINER)
    return subprocess.Popen(
        [sys.executable, str(script), str(marks), *(["early"] if early else [])],
        cwd=repo,
        start_new_session=True,
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


@pytest.mark.slow
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
        rec = store.read_settled(out[0]["id"])
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


@pytest.mark.slow
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
        deadline = time.monotonic() + 20
        out = []
        while not out and time.monotonic() < deadline:  # listed from its first commit on
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


@pytest.mark.slow
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


@pytest.mark.slow
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


PRINTER = r"""
import sys, time, gitexp
run = gitexp.start_run(params={"lr": 0.1})
i = 0
while True:
    run.log_metric("loss", 1.0 / (i + 1), step=i)
    if i % 100 == 0:
        print(f"step {i}", flush=True)
    i += 1
    time.sleep(0.001)
"""


def _git_exp_run(repo, *args):
    """`git exp run` as its own process (what the `git` wrapper execs), so it can be
    killed without its child."""
    return subprocess.Popen(
        [sys.executable, "-m", "gitexp", "run", *args],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_git_exp_run_killed_alone_keeps_the_child_data_and_its_output(repo, gx):
    """SIGKILL to `git exp run` only: its child loses its output pipe and dies; the run
    ends crashed with the child's points and params and the output captured so far."""
    (repo / "printer.py").write_text(PRINTER)
    proc = _git_exp_run(repo, "-e", "alone", "--", sys.executable, "printer.py")
    seen = b""
    while b"step 500\n" not in seen:
        seen += proc.stdout.read1(4096)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.time() + 30
    while time.time() < deadline:
        out = json.loads(gx.ok("log", "--json", "-e", "alone"))
        if out[0]["status"] != "running":
            break
        time.sleep(0.2)  # the orphaned child dies at its next print
    assert out[0]["status"] == "crashed"
    with ExpStore(repo) as store:
        rec = store.read_settled(out[0]["id"])
        steps = store.read_metrics(rec).column("step").to_pylist()
        log = next(a for a in rec.artifacts if a.path == "logs/stdout.log")
        text = store.cas.get_bytes(log.blake3).decode()
    assert rec.params == {"lr": 0.1}
    assert sorted(steps)[:501] == list(range(501))
    assert "step 0\n" in text and "step 500\n" in text
    assert not (repo / ".git" / "exp" / "live" / rec.run_id).exists()
    fsck(repo)


@pytest.mark.slow
def test_sigterm_to_git_exp_run_ends_the_run_killed(repo, gx):
    (repo / "printer.py").write_text(PRINTER)
    proc = _git_exp_run(repo, "-e", "term", "--", sys.executable, "printer.py")
    seen = b""
    while b"step 300\n" not in seen:
        seen += proc.stdout.read1(4096)
    time.sleep(1.0)  # the 301 points logged by now are more than 1 s old at the signal
    os.kill(proc.pid, signal.SIGTERM)  # passed on to the child
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    rec = json.loads(gx.ok("show", "--json", json.loads(gx.ok("log", "--json"))[0]["id"]))
    assert rec["info"]["status"] == "killed" and rec["info"]["exit_code"] == 143
    assert rec["metrics"]["loss"]["count"] >= 301
    fsck(repo)


@pytest.mark.slow
@pytest.mark.parametrize("early", [False, True], ids=["after-first-commit", "before-it"])
def test_concurrent_commands_settle_crashed_runs_once_and_all_see_them(repo, gx, tmp_path, early):
    """Right after three kills, six readers at once: each sees every run crashed, with
    no warning; each run gets exactly one `crash` commit (and, for runs killed before
    their first commit, exactly one `start` commit, made by one of the readers)."""
    ids = []
    for k in range(3):
        marks = tmp_path / f"marks{k}"
        proc = _start_trainer(repo, marks, early)
        _wait_for(marks, lambda t: len(_marks(t)) > 10)
        deadline = time.time() + 30
        while not early and len(run_refs(repo)) <= k and time.time() < deadline:
            time.sleep(0.02)  # until its first commit
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    readers = [
        subprocess.Popen(
            ["git", "exp", "log", "--json", "-e", "crash"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for r in readers:
        out, err = r.communicate(timeout=120)
        assert r.returncode == 0 and err == "", err
        rows = json.loads(out)
        assert len(rows) == 3 and {row["status"] for row in rows} == {"crashed"}, rows
        ids = sorted(row["id"] for row in rows)
    for run_id in ids:
        ref = f"refs/experiments/crash/{run_id}"
        subjects = git("log", "--format=%s", ref, cwd=repo).splitlines()
        assert sum(s.startswith("crash ") for s in subjects) == 1, subjects
        assert sum(s.startswith("start ") for s in subjects) == 1, subjects
    assert not list((repo / ".git" / "exp" / "live").glob("*"))
    fsck(repo)


OTHER_HOST = r"""
import socket, sys, time
socket.gethostname = lambda: "gpu-node-7"  # a run started on another machine
import gitexp, gitexp.records as fmt
if sys.argv[1] == "old":  # ...whose clock says it was an hour ago
    import datetime as dt
    real = fmt.utc_now
    fmt.utc_now = lambda: real() - dt.timedelta(hours=1)
run = gitexp.start_run(experiment="remote", params={"clock": sys.argv[1]})
run.log_metric("x", 1.0)
run.checkpoint()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_runs_from_other_hosts_read_crashed_after_the_heartbeat_threshold(tmp_path, gx):
    """A run fetched from another machine is never rewritten here: it reads as running
    while its heartbeat is fresh and as crashed once it is older than 30 minutes."""
    from conftest import make_repo

    there = make_repo(tmp_path / "there")
    (there / "remote.py").write_text(OTHER_HOST)
    for clock in ("fresh", "old"):
        kill_when_ready(["remote.py", clock], there, "ready")
    here = tmp_path / "here"
    git("clone", "-q", str(there), str(here))
    git("fetch", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=here)
    tips = git("for-each-ref", "refs/experiments/", cwd=here)
    rows = json.loads(gx.ok("log", "--json", "-e", "remote", cwd=here))
    status = {row["params.clock"]: row["status"] for row in rows}
    assert status == {"fresh": "running", "old": "crashed"}
    assert git("for-each-ref", "refs/experiments/", cwd=here) == tips  # not rewritten
    fsck(here)


@pytest.mark.slow
def test_a_simulated_ten_hour_run_stays_within_the_object_budget(repo, monkeypatch):
    """10 hours of 20 metrics, driven through the real flush/checkpoint logic on a
    simulated clock: a few hundred commits, at most a few thousand git objects, and
    under 3 MB of packed history besides the metric segments themselves."""
    from gitexp import tracking

    now = [1000.0]
    monkeypatch.setattr(tracking, "_clock", lambda: now[0])
    # its points are counted: no sampler thread adding system/ points on the real clock
    run = gitexp.start_run(experiment="long", repo=repo, system_metrics=False)
    tracking._open_runs.discard(run)  # this test ticks, not the flusher thread
    code_commit = git("rev-parse", "HEAD", cwd=repo).strip()  # a clean work tree
    step = 0
    while now[0] - 1000.0 < 10 * 3600:
        now[0] += 10.0  # one tick per 10 s (the flusher ticks every 0.05 s)
        # a sample of the 20 x 1000 points logged in 10 s: the commits, trees and
        # JSON files a checkpoint writes do not grow with the points in it
        run.log_metrics({f"m{k}": step * 0.001 + k for k in range(20)}, step=step)
        step += 1
        run._tick(now[0])
    run.finish()
    commits = int(git("rev-list", "--count", run.ref, f"^{code_commit}", cwd=repo))
    # the schedule makes ~200 (every 5 s early, then age/20, at most 300 s apart);
    # ticking every 10 s, the first 200 s make 20 instead of 40
    assert 120 < commits < 260, commits
    objects = git("rev-list", "--objects", run.ref, f"^{code_commit}", cwd=repo).split("\n")
    assert len(objects) < 7 * commits + 50 < 2000
    git("gc", "-q", cwd=repo)
    sizes = git(
        "cat-file",
        "--batch-check=%(objectname) %(objecttype) %(objectsize:disk)",
        cwd=repo,
        input="\n".join(ln.split()[0] for ln in objects if ln) + "\n",
    )
    segments = {
        ln.split()[2]
        for sha in git("rev-list", run.ref, f"^{code_commit}", cwd=repo).split()
        for ln in git("ls-tree", "-r", sha, "--", "metrics", cwd=repo).splitlines()
    }
    overhead = sum(
        int(size)
        for sha, kind, size in (ln.split() for ln in sizes.splitlines())
        if sha not in segments
    )
    print(f"10 h: {commits} commits, {len(objects)} objects, {overhead} B besides metrics")
    assert overhead < 3 << 20, overhead
    with ExpStore(repo) as store:
        rec = store.read_settled(run.id)
        assert store.read_metrics(rec).num_rows == step * 20
    fsck(repo)
