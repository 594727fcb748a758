"""``method: optuna`` and ``gitexp.OptunaCallback``, against the real Optuna."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import fsck, git, run_refs, show_json
from servers import require

try:
    import optuna
except ImportError:  # the test extra has it; CI fails without it
    optuna = None


@pytest.fixture(autouse=True)
def _optuna():
    require(optuna is not None, "optuna (pip install 'git-exp[optuna]')")


SLOW_TRIAL = """\
import time
import gitexp

p = gitexp.params()
with gitexp.start_run() as run:
    for step in range(40):
        run.log_metric("loss", 1.0 if p["bad"] else 0.1 / (step + 1), step=step)
        time.sleep(0.05)
"""


@pytest.fixture
def project(repo):
    (repo / "trial.py").write_text(SLOW_TRIAL)
    git("add", "trial.py", cwd=repo)
    git("commit", "-q", "-m", "trial script", cwd=repo)
    return repo


def spec_file(path, **fields):
    data = {
        "experiment": "tpe",
        "command": f"{sys.executable} trial.py",
        "method": "optuna",
        "metric": {"name": "loss", "goal": "minimize"},
        "trials": 2,
        "seed": 1,
        "parameters": {"bad": {"values": [0, 1]}},
    }
    data.update(fields)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_a_pruner_stops_a_running_command_trial_and_its_run_keeps_its_metrics(gx, project):
    spec_file(
        project / "s.json",
        sampler="grid",
        pruner={"name": "threshold", "upper": 0.5, "n_warmup_steps": 2},
    )
    t0 = time.monotonic()
    proc = gx("sweep", "s.json", "-j", "2")
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    sweep_id = proc.stdout.strip()
    runs = {r: show_json(project, r, "run.json") for r in run_refs(project)}
    assert len(runs) == 2
    by_bad = {show_json(project, r, "params.json")["bad"]: r for r in runs}
    assert set(by_bad) == {0, 1}  # the grid sampler covered both
    bad, good = by_bad[1], by_bad[0]
    assert runs[bad]["status"] == "pruned" and runs[good]["status"] == "finished"
    loss = json.loads(git("show", f"{bad}:summary.json", cwd=project))["metrics"]["loss"]
    assert 3 <= loss["count"] < 40 and loss["last"] == 1.0  # stopped early, points kept
    assert (
        json.loads(git("show", f"{good}:summary.json", cwd=project))["metrics"]["loss"]["count"]
        == 40
    )
    assert took < 20
    rec = json.loads(git("show", f"refs/sweeps/{sweep_id}:sweep.json", cwd=project))
    assert rec["method"] == "optuna" and rec["counts"] == {"finished": 1, "pruned": 1}
    assert rec["best"]["run"] == good  # a pruned trial's last value is never the best
    assert "1 pruned" in proc.stderr
    # resume rebuilds the study from the runs (params, values, steps) and runs nothing again
    proc = gx("sweep", "resume", sweep_id, "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(run_refs(project)) == sorted(runs)
    rec = json.loads(git("show", f"refs/sweeps/{sweep_id}:sweep.json", cwd=project))
    assert rec["status"] == "finished" and rec["counts"] == {"finished": 1, "pruned": 1}
    fsck(project)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"sampler": "nosuch"}, "unknown Optuna sampler 'nosuch'"),
        ({"pruner": "percentile"}, "pruner percentile:"),  # needs its percentile
        ({"pruner": {"name": "median", "colour": 1}}, "pruner median:"),
        ({"method": "grid", "sampler": "tpe"}, "sampler is for method optuna"),
        ({"sampler": 3}, "sampler must be the name of an Optuna sampler"),
        (
            {
                "sampler": {"name": "grid"},
                "parameters": {"x": {"distribution": "uniform", "min": 0, "max": 1}},
            },
            "sampler grid needs 'values'",
        ),
    ],
)
def test_bad_optuna_settings_are_refused_in_one_line(project, fields, message):
    from gitexp.errors import SpecError
    from gitexp.sweeps import load_spec
    from gitexp.sweeps.driver import check_before_start

    spec_file(project / "bad.json", **fields)
    with pytest.raises(SpecError) as exc:
        spec, _ = load_spec("bad.json")
        check_before_start(spec, str(project))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_bad_sampler_stops_the_command_before_any_trial(gx, project):
    spec_file(project / "bad.json", sampler={"name": "tpe", "n_startup_trials": "x"})
    proc = gx("sweep", "bad.json")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "sampler tpe:" in proc.stderr
    assert run_refs(project) == []
    assert git("for-each-ref", "refs/sweeps/", cwd=project) == ""


def test_without_optuna_installed_the_error_names_the_extra(project):
    spec_file(project / "s.json")
    script = (
        "import sys; sys.modules['optuna'] = None\n"  # import optuna -> ImportError
        "from gitexp.cli import main\n"
        "sys.argv = ['git-exp', 'sweep', 's.json']\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "git exp: error: method optuna needs Optuna, which is not installed "
        "(pip install 'git-exp[optuna]')"
    )
    assert run_refs(project) == []


@pytest.mark.slow
def test_gitexp_sweep_with_optuna_prunes_through_the_run_it_gives_the_function(project):
    import gitexp

    def objective(params, budget, run):
        x = params["x"]
        for step in range(8):
            run.log_metric("loss", (x - 2.0) ** 2 + 1.0 / (step + 1), step=step)
        return (x - 2.0) ** 2

    best = gitexp.sweep(
        objective,
        {"x": {"distribution": "uniform", "min": -10, "max": 10}, "tag": "fixed"},
        method="optuna",
        metric={"name": "loss", "goal": "minimize"},
        trials=14,
        seed=3,
        sampler={"name": "tpe", "n_startup_trials": 4},
        pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
        experiment="fn-tpe",
    )
    refs = run_refs(project)
    assert len(refs) == 14
    runs = {r: show_json(project, r, "run.json") for r in refs}
    params = {r: show_json(project, r, "params.json") for r in refs}
    pruned = [r for r, info in runs.items() if info["status"] == "pruned"]
    finished = [r for r, info in runs.items() if info["status"] == "finished"]
    assert pruned and finished and len(pruned) + len(finished) == 14
    for r in pruned:  # stopped part-way, what it logged kept
        count = json.loads(git("show", f"{r}:summary.json", cwd=project))["metrics"]["loss"]
        assert 2 <= count["count"] < 8
    assert all(-10 <= p["x"] <= 10 and p["tag"] == "fixed" for p in params.values())
    # the best is the best finished trial, and TPE got near the optimum x = 2
    values = {r: (params[r]["x"] - 2.0) ** 2 for r in finished}
    assert best["run"] == min(values, key=values.get)
    assert abs(best["params"]["x"] - 2.0) < 2.0
    rec = json.loads(git("show", f"refs/sweeps/{best['sweep']}:sweep.json", cwd=project))
    assert rec["counts"]["pruned"] == len(pruned)
    assert {t["run"]: t["params"]["x"] for t in rec["trials"]} == {
        r: p["x"] for r, p in params.items()
    }
    fsck(project)


def test_the_optuna_callback_records_each_trial_of_an_existing_study_as_a_run(project):
    import gitexp

    callback = gitexp.OptunaCallback(metric="val_loss", experiment="study", tags=["team=a"])

    @callback.track_in_run()
    def objective(trial):
        x = trial.suggest_float("x", -4, 4)
        opt = trial.suggest_categorical("opt", ["sgd", "adam"])
        trial.set_user_attr("note", "hi")
        gitexp.log_metric("inner", x * 2, step=0)  # into the trial's run
        for step in range(3):
            trial.report((x - 1) ** 2 + step, step)
        if trial.number == 2:
            raise optuna.TrialPruned()
        if trial.number == 3:
            raise ValueError("diverged")
        return (x - 1) ** 2 + (0.5 if opt == "sgd" else 0.0)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="s1", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=5, callbacks=[callback], catch=(ValueError,))
    refs = run_refs(project)
    assert len(refs) == 5 and len(callback.runs) == 5
    by_trial = {}
    for r in refs:
        info = show_json(project, r, "run.json")
        assert info["links"]["optuna"]["study"] == "s1"
        assert "optuna-study=s1" in info["tags"] and "team=a" in info["tags"]
        by_trial[info["links"]["optuna"]["trial"]] = (r, info)
    statuses = {t: info["status"] for t, (_, info) in by_trial.items()}
    assert statuses == {0: "finished", 1: "finished", 2: "pruned", 3: "failed", 4: "finished"}
    assert "diverged" in by_trial[3][1]["error"]
    for t, frozen in enumerate(study.trials):
        ref = by_trial[t][0]
        params = show_json(project, ref, "params.json")
        assert params["x"] == frozen.params["x"] and params["opt"] == frozen.params["opt"]
        summary = json.loads(git("show", f"{ref}:summary.json", cwd=project))
        assert summary["metrics"]["inner"]["last"] == pytest.approx(frozen.params["x"] * 2)
        if frozen.state == optuna.trial.TrialState.COMPLETE:
            assert params["user_attrs"] == {"note": "hi"}
            assert summary["metrics"]["val_loss"]["count"] == 3
            assert summary["final"]["val_loss"] == pytest.approx(frozen.value)
    assert callback.runs[("s1", 0)] == by_trial[0][0]
    fsck(project)


def test_the_optuna_callback_alone_records_trials_after_the_fact(project):
    import gitexp

    callback = gitexp.OptunaCallback()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(lambda t: t.suggest_int("n", 1, 9) * 1.5, n_trials=3, callbacks=[callback])
    refs = run_refs(project)
    assert len(refs) == 3
    for r in refs:
        n = show_json(project, r, "params.json")["n"]
        summary = json.loads(git("show", f"{r}:summary.json", cwd=project))
        assert summary["final"]["value"] == n * 1.5
        assert show_json(project, r, "run.json")["status"] == "finished"
    assert os.path.isdir(project / ".git" / "exp")
