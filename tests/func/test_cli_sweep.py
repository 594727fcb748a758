"""``git exp sweep`` end to end: real trial processes, real git, the record checked with git."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import fsck, git, run_refs, show_json, user_state

TRIAL = """\
import os, sys, time
import gitexp

p = gitexp.params()  # no argument parsing: the sweep's params
with gitexp.start_run() as run:
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        run.log_params({"gpu": os.environ["CUDA_VISIBLE_DEVICES"]})
    time.sleep(float(os.environ.get("TRIAL_SLEEP", "0")))
    lr, epochs = float(p["lr"]), int(p.get("epochs", 1))
    assert sys.argv[1:3] == ["--lr", str(p["lr"])], sys.argv
    if os.environ.get("TRIAL_SILENT") != "1":
        for e in range(epochs):
            run.log_metrics({"acc": 1 - abs(lr - 0.01) + 0.001 * e}, step=e)
"""


@pytest.fixture
def project(repo):
    (repo / "trial.py").write_text(TRIAL)
    git("add", "trial.py", cwd=repo)
    git("commit", "-q", "-m", "trial script", cwd=repo)
    return repo


def write_spec(path, **fields):
    data = {
        "experiment": "lr-sweep",
        "command": f"{sys.executable} trial.py --lr {{lr}}",
        "method": "grid",
        "metric": {"name": "acc", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.1, 0.01]}, "bs": {"values": [16, 32]}},
    }
    data.update(fields)
    path.write_text(json.dumps(data))
    return path


def sweep_refs(repo):
    return git("for-each-ref", "--format=%(refname)", "refs/sweeps/", cwd=repo).split()


@pytest.mark.slow
def test_grid_sweep_runs_every_trial_as_a_linked_run_in_parallel(gx, project):
    spec = write_spec(project / "sweep.json")
    before = user_state(project)
    proc = gx("sweep", "sweep.json", "-j", "2", env={"TRIAL_SLEEP": "0.6"})
    assert proc.returncode == 0, proc.stderr
    sweep_id = proc.stdout.splitlines()[0]
    assert sweep_id == proc.stdout.strip()  # the id alone on stdout
    assert "4/4 done" in proc.stderr and "best acc=" in proc.stderr
    refs = run_refs(project)
    assert len(refs) == 4
    runs = [show_json(project, r, "run.json") for r in refs]
    params = [show_json(project, r, "params.json") for r in refs]
    assert sorted(r["links"]["sweep"]["trial"] for r in runs) == [0, 1, 2, 3]
    assert {r["links"]["sweep"]["id"] for r in runs} == {sweep_id}
    assert all(r["status"] == "finished" and f"sweep={sweep_id}" in r["tags"] for r in runs)
    assert sorted((p["lr"], p["bs"]) for p in params) == [
        (0.01, 16),
        (0.01, 32),
        (0.1, 16),
        (0.1, 32),
    ]
    # everything `git exp run` records: the logs, the code commit, the command
    assert all(r["command"][1:3] == ["trial.py", "--lr"] for r in runs)
    # the code is captured once (the sweep file is an untracked change: one snapshot)
    code = {show_json(project, r, "code.json")["commit"] for r in refs}
    heads = {show_json(project, r, "code.json")["head"] for r in refs}
    assert len(code) == 1 and heads == {git("rev-parse", "HEAD", cwd=project).strip()}
    # the sweep, recorded in git: its file, method, seed, each trial's state, the best
    assert sweep_refs(project) == [f"refs/sweeps/{sweep_id}"]
    rec = json.loads(git("show", f"refs/sweeps/{sweep_id}:sweep.json", cwd=project))
    assert rec["format"] == 1 and rec["method"] == "grid" and rec["seed"] == 0
    assert rec["status"] == "finished" and len(rec["trials"]) == 4
    assert rec["best"]["params"]["lr"] == 0.01 and rec["best"]["value"] == pytest.approx(1.0)
    assert git("show", f"refs/sweeps/{sweep_id}:spec.json", cwd=project) == spec.read_text()
    # reading it back: show, list, log --sweep
    shown = json.loads(gx.ok("sweep", "show", sweep_id, "--json"))
    assert shown["counts"] == {"finished": 4}
    assert {i["param"] for i in shown["importance"]} == {"lr", "bs"}
    assert sweep_id in gx.ok("sweep", "list")
    text = gx.ok("sweep", "show", sweep_id)
    assert "best" in text and "parameter importance" in text
    logged = json.loads(gx.ok("log", "--sweep", sweep_id, "--json"))
    assert len(logged) == 4
    assert user_state(project) == before
    fsck(project)


@pytest.mark.slow
def test_trials_overlap_with_j2_and_each_gets_its_own_gpu(gx, project):
    write_spec(project / "s.json", parameters={"lr": {"values": [0.1, 0.2]}})
    proc = gx("sweep", "s.json", "-j", "2", "--gpus", "0,1", env={"TRIAL_SLEEP": "1.5"})
    assert proc.returncode == 0, proc.stderr
    gpus = sorted(show_json(project, r, "params.json")["gpu"] for r in run_refs(project))
    assert gpus == ["0", "1"]
    # two trials at once, not one after the other: their recorded lifetimes overlap
    # (read from the runs, so a loaded machine cannot fail it; the speed-up is
    # measured in bench/bench_sweep.py)
    a, b = (show_json(project, r, "run.json") for r in run_refs(project))
    assert a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"method": "bayes"}, "unknown method 'bayes'"),
        (
            {"parameters": {"lr": {"distribution": "normal", "min": 0, "max": 1}}},
            "unknown distribution",
        ),
        (
            {
                "method": "random",
                "trials": 2,
                "parameters": {"lr": {"distribution": "uniform", "min": 1, "max": 0}},
            },
            "greater than max",
        ),
        (
            {
                "method": "random",
                "trials": 2,
                "parameters": {"lr": {"distribution": "log_uniform", "min": 0, "max": 1}},
            },
            "log_uniform needs min > 0",
        ),
        ({"parameters": {"lr": {"values": []}}}, "is empty"),
        ({"command": "python trial.py --lr {lr} --wd {wd}"}, "placeholder {wd} names no parameter"),
        (
            {"method": "hyperband", "budget": {"param": "epochs", "min": 1, "max": 9}},
            "budget param 'epochs' is not in the command",
        ),
    ],
)
def test_bad_sweep_files_fail_in_one_line_before_any_trial(gx, project, fields, message):
    write_spec(project / "bad.json", **fields)
    proc = gx("sweep", "bad.json")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == "" and run_refs(project) == [] and sweep_refs(project) == []


def test_missing_program_unreachable_executor_and_bad_files_are_refused(gx, project):
    write_spec(project / "s.json", command="no-such-program-xyz {lr}")
    proc = gx("sweep", "s.json")
    assert proc.returncode == 127 and "command not found" in proc.stderr
    write_spec(project / "s.json")
    for executor in ("dask://127.0.0.1:1", "ftp://x"):
        proc = gx("sweep", "s.json", "--executor", executor)
        assert proc.returncode == 11 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    (project / "s.yaml").write_text("method: [grid\n")
    proc = gx("sweep", "s.yaml")
    assert proc.returncode == 2 and "does not parse" in proc.stderr
    proc = gx("sweep", "missing.yaml")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = gx("sweep", "show", "20990101-000000-abcdef")
    assert proc.returncode == 4 and "no sweep" in proc.stderr
    proc = gx("log", "--sweep", "../../x")
    assert proc.returncode == 4
    assert run_refs(project) == [] and sweep_refs(project) == []


@pytest.mark.slow
def test_a_trial_without_the_metric_fails_and_a_hopeless_sweep_stops_early(gx, project):
    write_spec(
        project / "s.json",
        method="random",
        trials=10,
        parameters={"lr": {"distribution": "uniform", "min": 0.001, "max": 0.1}},
    )
    proc = gx("sweep", "s.json", env={"TRIAL_SILENT": "1"})
    assert proc.returncode == 1
    assert "never logged the sweep's metric 'acc'" in proc.stderr
    assert "stopping instead of running the rest" in proc.stderr
    refs = run_refs(project)
    assert len(refs) == 3  # not 10
    assert all(show_json(project, r, "run.json")["status"] == "failed" for r in refs)


@pytest.mark.slow
def test_hyperband_prunes_and_promotes_with_bigger_budgets(gx, project):
    write_spec(
        project / "hb.json",
        method="hyperband",
        command=f"{sys.executable} trial.py --lr {{lr}} --epochs {{epochs}}",
        budget={"param": "epochs", "min": 1, "max": 3, "eta": 3},
        seed=7,
        parameters={"lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1}},
    )
    dry = json.loads(gx.ok("sweep", "hb.json", "--dry-run", "--json"))
    assert [[(r["n"], r["budget"]) for r in b["rungs"]] for b in dry["brackets"]] == [
        [(3, 1), (1, 3)],
        [(2, 3)],
    ]
    assert run_refs(project) == [] and sweep_refs(project) == []  # a dry run runs nothing
    proc = gx("sweep", "hb.json", "-j", "2")
    assert proc.returncode == 0, proc.stderr
    sweep_id = proc.stdout.strip()
    runs = {r: show_json(project, r, "run.json") for r in run_refs(project)}
    assert len(runs) == 3 + 1 + 2
    pruned = [r for r, info in runs.items() if info["status"] == "pruned"]
    assert len(pruned) == 2
    by_key = {
        (i["links"]["sweep"]["trial"], i["links"]["sweep"]["rung"]): r for r, i in runs.items()
    }
    promoted = [t for (t, rung) in by_key if rung == 1]
    assert len(promoted) == 1
    (t,) = promoted
    # the promoted trial ran again with the bigger budget and the same configuration
    low = show_json(project, by_key[(t, 0)], "params.json")
    high = show_json(project, by_key[(t, 1)], "params.json")
    assert low["epochs"] == 1 and high["epochs"] == 3 and low["lr"] == high["lr"]
    # the best of rung 0 went on
    accs = {
        k: json.loads(git("show", f"{r}:summary.json", cwd=project))["metrics"]["acc"]["last"]
        for k, r in by_key.items()
        if k[1] == 0 and runs[r]["links"]["sweep"]["bracket"] == 0
    }
    assert max(accs, key=accs.get) == (t, 0)
    # the configurations are the dry run's, from the seed
    firsts = {
        k[0]: show_json(project, r, "params.json")["lr"] for k, r in by_key.items() if k[1] == 0
    }
    assert firsts == {c["trial"]: c["params"]["lr"] for c in dry["configurations"]}
    shown = json.loads(gx.ok("sweep", "show", sweep_id, "--json"))
    assert shown["counts"]["pruned"] == 2 and shown["best"]["budget"] == 3
    assert len(json.loads(gx.ok("log", "--sweep", sweep_id, "-s", "pruned", "--json"))) == 2


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_running_finished_trials_again(gx, project):
    write_spec(
        project / "s.json",
        method="random",
        trials=5,
        seed=3,
        parameters={"lr": {"distribution": "uniform", "min": 0.001, "max": 0.1}},
    )
    env = {**os.environ, "TRIAL_SLEEP": "0.8"}
    driver = subprocess.Popen(
        ["git", "exp", "sweep", "s.json", "-q"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sweep_id = driver.stdout.readline().strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [
            r
            for r in run_refs(project)
            if show_json(project, r, "run.json")["status"] == "finished"
        ]
        if len(done) >= 2:
            break
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the trial it runs
    driver.communicate()
    finished_before = {
        show_json(project, r, "run.json")["links"]["sweep"]["trial"]: r
        for r in run_refs(project)
        if show_json(project, r, "run.json")["status"] == "finished"
    }
    assert 2 <= len(finished_before) < 5
    proc = gx("sweep", "resume", sweep_id, env={"TRIAL_SLEEP": "0"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == sweep_id
    finished = {}
    for r in run_refs(project):
        info = show_json(project, r, "run.json")
        if info["status"] == "finished":
            trial = info["links"]["sweep"]["trial"]
            assert trial not in finished, "a trial ran to its end twice"
            finished[trial] = r
    assert sorted(finished) == [0, 1, 2, 3, 4]
    for trial, ref in finished_before.items():
        assert finished[trial] == ref  # not run again
    # the same seed gives the same configurations
    dry = json.loads(gx.ok("sweep", "s.json", "--dry-run", "--json"))
    want = {c["trial"]: c["params"]["lr"] for c in dry["configurations"]}
    got = {t: show_json(project, r, "params.json")["lr"] for t, r in finished.items()}
    assert got == want
    rec = json.loads(git("show", f"refs/sweeps/{sweep_id}:sweep.json", cwd=project))
    assert rec["status"] == "finished"
    assert sorted(t["trial"] for t in rec["trials"] if t["state"] == "finished") == [0, 1, 2, 3, 4]


def test_python_api_sweep_records_each_call_as_a_run(project):
    import gitexp

    calls = []

    def fn(params, budget, run):
        calls.append(budget)
        run.log_metric("loss", (params["x"] - 2) ** 2, step=0)
        return (params["x"] - 2) ** 2

    best = gitexp.sweep(
        fn,
        {"x": {"values": [0, 1, 2, 3]}},
        method="grid",
        metric={"name": "loss", "goal": "minimize"},
        jobs=2,
    )
    assert best["params"] == {"x": 2} and best["value"] == 0
    assert len(calls) == 4 and len(run_refs(project)) == 4
    rec = json.loads(git("show", f"refs/sweeps/{best['sweep']}:sweep.json", cwd=project))
    assert rec["executor"] == "python" and rec["best"]["trial"] == 2


@pytest.mark.slow
def test_resume_right_after_a_kill_mid_update_breaks_the_dead_drivers_ref_lock(gx, project):
    write_spec(project / "s.json", parameters={"lr": {"values": [0.1, 0.01]}})
    proc = gx("sweep", "s.json", "-q")
    assert proc.returncode == 0, proc.stderr
    sweep_id = proc.stdout.strip()
    # a driver SIGKILLed while it moved its ref leaves the ref's lock behind,
    # fresh: git itself would wait for it to age; the next driver must not
    lock = project / ".git" / "refs" / "sweeps" / f"{sweep_id}.lock"
    lock.write_text("0" * 40 + "\n")
    proc = gx("sweep", "resume", sweep_id, "-q")
    assert proc.returncode == 0, proc.stderr
    assert not lock.exists()
    fsck(project)


@pytest.mark.slow
def test_a_second_driver_of_a_running_sweep_is_refused_and_changes_nothing(gx, project):
    write_spec(project / "s.json", parameters={"lr": {"values": [0.1, 0.01]}})
    env = {**os.environ, "TRIAL_SLEEP": "2"}
    driver = subprocess.Popen(
        ["git", "exp", "sweep", "s.json", "-q"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sweep_id = driver.stdout.readline().strip()
        proc = gx("sweep", "resume", sweep_id)
        assert proc.returncode == 7
        assert "being run by another process" in proc.stderr
        assert proc.stderr.count("\n") == 1
    finally:
        _, err = driver.communicate(timeout=60)
    assert driver.returncode == 0, err
    # the refused driver wrote nothing: no "resumed" commit, and each trial ran once
    log = git("log", "--format=%s", f"refs/sweeps/{sweep_id}", cwd=project)
    assert "resumed" not in log
    assert len(run_refs(project)) == 2
