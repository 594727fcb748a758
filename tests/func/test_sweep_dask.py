"""``git exp sweep --executor dask://...``: a real local Dask cluster (a scheduler and
two workers, separate processes on 127.0.0.1) and a shared remote served by
``git daemon``; what arrives is checked with the ``git`` binary."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import cas_bytes, fsck, git, run_refs, show_json
from frameworks import need
from servers import bare

TRIAL = """\
import time
import gitexp

p = gitexp.params()
with gitexp.start_run() as run:
    lr, epochs = float(p["lr"]), int(p.get("epochs", 1))
    for e in range(epochs):
        run.log_metrics({"acc": 1 - abs(lr - 0.01) + 0.001 * e}, step=e)
    print("trained", lr, epochs)
"""

PRUNED_TRIAL = """\
import time
import gitexp

p = gitexp.params()
with gitexp.start_run() as run:
    for step in range(30):  # a bad trial would take 3 s: the pruner stops it well before
        run.log_metric("loss", 1.0 if p["bad"] else 0.1, step=step)
        time.sleep(0.1 if p["bad"] else 0.02)
"""


def shared_project(repo, daemon, name):
    """The project with a trial script committed, and a shared remote: a bare
    repository served over git:// with a file artifact store beside it."""
    (repo / "trial.py").write_text(TRIAL)
    (repo / "pruned.py").write_text(PRUNED_TRIAL)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "trial scripts", cwd=repo)
    remote = bare(daemon.base, name)
    store = daemon.base / (name + ".store")
    git("remote", "add", "origin", daemon.url(name), cwd=repo)
    git("config", "remote.origin.expstore", store.as_uri(), cwd=repo)
    return remote, store


def write(path, **fields):
    path.write_text(json.dumps(fields))


@pytest.mark.slow
def test_a_sweep_on_a_dask_cluster_shares_every_trial_as_an_ordinary_run(
    gx, repo, git_daemon, dask_cluster
):
    remote, store = shared_project(repo, git_daemon, "sweep-dask.git")
    write(
        repo / "sh.json",
        experiment="dist",
        command=f"{sys.executable} trial.py --lr {{lr}} --epochs {{epochs}}",
        method="successive_halving",
        metric={"name": "acc", "goal": "maximize"},
        budget={"param": "epochs", "min": 1, "max": 2, "eta": 2},
        trials=2,
        seed=5,
        parameters={"lr": {"distribution": "uniform", "min": 0.001, "max": 0.5}},
    )
    proc = gx("sweep", "sh.json", "--executor", dask_cluster.address, "-j", "2")
    assert proc.returncode == 0, proc.stderr
    sweep_id = proc.stdout.strip()
    here = run_refs(repo)
    there = run_refs(remote)
    assert len(here) == 2 + 1 and sorted(here) == sorted(there)
    for ref in here:  # the same runs, commit for commit, here and on the remote
        assert git("rev-parse", ref, cwd=repo) == git("rev-parse", ref, cwd=remote)
    runs = {r: show_json(remote, r, "run.json") for r in there}
    assert all(r["links"]["sweep"]["id"] == sweep_id for r in runs.values())
    assert all(f"sweep={sweep_id}" in r["tags"] for r in runs.values())
    statuses = sorted(r["status"] for r in runs.values())
    assert statuses == ["finished", "finished", "pruned"]  # pruned: pushed back
    # every trial ran on a worker, in a clean checkout under its own directory
    ran_in = {
        str(w)
        for r in runs.values()
        for w in dask_cluster.workers
        if r["cwd"].startswith(str(w) + "/")
    }
    assert len(ran_in) == 2, [r["cwd"] for r in runs.values()]
    # at the sweep's code commit, which the sweep's ref carries to the remote
    code = {show_json(remote, r, "code.json")["commit"] for r in there}
    assert len(code) == 1
    (commit,) = code
    # sh.json is not committed: the code is a snapshot of the work tree, on HEAD,
    # which reached the workers through the remote
    assert git("rev-parse", f"{commit}^", cwd=remote) == git("rev-parse", "HEAD", cwd=repo)
    assert (
        json.loads(git("show", f"{commit}:sh.json", cwd=remote))["method"] == "successive_halving"
    )
    sweep_commits = git("rev-list", f"refs/sweeps/{sweep_id}", cwd=remote).split()
    assert commit in sweep_commits
    # the promoted trial: the best of rung 0, run again with the whole budget
    by_key = {
        (i["links"]["sweep"]["trial"], i["links"]["sweep"]["rung"]): r for r, i in runs.items()
    }
    (top,) = [k for k in by_key if k[1] == 1]
    firsts = {
        t: show_json(remote, r, "params.json")["lr"] for (t, rung), r in by_key.items() if rung == 0
    }
    assert top[0] == min(firsts, key=lambda t: (abs(firsts[t] - 0.01), t))
    assert show_json(remote, by_key[top], "params.json") == {"lr": firsts[top[0]], "epochs": 2}
    # the logs travelled through the artifact store into the driver's repository
    for ref in here:
        logs = [a for a in show_json(repo, ref, "artifacts.json") if a["path"] == "logs/stdout.log"]
        key = logs[0]["blake3"]
        assert (repo / ".git" / "exp" / "objects" / key[:2] / key[2:]).exists()
        assert (store / "objects" / key[:2] / key[2:]).exists()
    assert cas_bytes(repo) > 0
    rec = json.loads(git("show", f"refs/sweeps/{sweep_id}:sweep.json", cwd=remote))
    assert rec["status"] == "finished" and rec["executor"] == dask_cluster.address
    assert rec["remote"]["url"] == git_daemon.url("sweep-dask.git")
    assert rec["best"]["run"] == by_key[top]
    assert rec["counts"] == {"finished": 1, "promoted": 1, "pruned": 1}
    fsck(repo)
    fsck(remote)


@pytest.mark.slow
def test_an_optuna_pruner_stops_a_trial_running_on_a_dask_worker(
    gx, repo, git_daemon, dask_cluster
):
    need("optuna", "optuna")
    remote, _ = shared_project(repo, git_daemon, "sweep-dask-prune.git")
    write(
        repo / "tpe.json",
        command=f"{sys.executable} pruned.py",
        method="optuna",
        metric={"name": "loss", "goal": "minimize"},
        trials=2,
        sampler="grid",
        pruner={"name": "threshold", "upper": 0.5, "n_warmup_steps": 2},
        parameters={"bad": {"values": [0, 1]}},
    )
    proc = gx("sweep", "tpe.json", "--executor", dask_cluster.address)
    assert proc.returncode == 0, proc.stderr
    statuses = {}
    for ref in run_refs(remote):
        bad = show_json(remote, ref, "params.json")["bad"]
        statuses[bad] = show_json(remote, ref, "run.json")["status"]
        count = json.loads(git("show", f"{ref}:summary.json", cwd=remote))["metrics"]["loss"]
        assert count["count"] < 30 if bad else count["count"] == 30
    assert statuses == {0: "finished", 1: "pruned"}
    fsck(remote)


def test_an_unreachable_or_malformed_executor_fails_in_one_line_before_any_trial(gx, repo):
    from gitexp.errors import ExecutorError
    from gitexp.sweeps.driver import make_executor

    for address in ("dask://nohost", "dask://127.0.0.1:x", "dask://:1", "ray://h:1", "ftp://x"):
        with pytest.raises(ExecutorError) as exc:
            make_executor(address, None)
        assert "\n" not in str(exc.value)
    write(
        repo / "s.json",
        command="python train.py --lr {lr}",
        method="grid",
        parameters={"lr": {"values": [1]}},
    )
    proc = gx("sweep", "s.json", "--executor", "dask://127.0.0.1:1")
    assert proc.returncode == 11 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("git exp: error: executor dask://127.0.0.1:1: cannot reach the")
    assert proc.stderr.count("\n") == 1
    assert run_refs(repo) == [] and git("for-each-ref", "refs/sweeps/", cwd=repo) == ""


@pytest.mark.slow
def test_a_cluster_sweep_without_a_usable_remote_stops_before_any_trial(
    gx, repo, git_daemon, dask_cluster, tmp_path
):
    write(
        repo / "s.json",
        command="python train.py --lr {lr}",
        method="grid",
        parameters={"lr": {"values": [1]}},
    )
    proc = gx("sweep", "s.json", "--executor", dask_cluster.address)
    assert proc.returncode == 10 and "no remote" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    bare(git_daemon.base, "dask-nostore.git")
    git("remote", "add", "origin", git_daemon.url("dask-nostore.git"), cwd=repo)
    proc = gx("sweep", "s.json", "--executor", dask_cluster.address)
    assert proc.returncode == 10 and "has no artifact store" in proc.stderr, proc.stderr
    assert run_refs(repo) == [] and git("for-each-ref", "refs/sweeps/", cwd=repo) == ""
