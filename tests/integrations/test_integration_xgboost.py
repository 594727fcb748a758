"""gitexp.integrations.xgboost against real XGBoost (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

import gitexp
from conftest import fsck, run_refs
from frameworks import artifact_names, need, recorded, restore, under_git_exp_run

pytestmark = pytest.mark.slow

PARAMS = {
    "eta": 0.3,
    "max_depth": 3,
    "objective": "reg:squarederror",
    "eval_metric": ["rmse", "mae"],
}
ROUNDS = 12


@pytest.fixture(scope="module")
def xgb():
    return need("xgboost", "xgboost")


def _data(xgb):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6))
    y = x @ rng.normal(size=6) + 0.1 * rng.normal(size=600)
    return xgb.DMatrix(x[:450], label=y[:450]), xgb.DMatrix(x[450:], label=y[450:])


def test_a_training_is_recorded_in_a_run_the_callback_starts_and_leaves_open(repo, xgb, tmp_path):
    from gitexp.integrations.xgboost import GitExpCallback

    dtrain, dvalid = _data(xgb)
    cb = GitExpCallback(experiment="xgb", name="boost", tags=["gbm"])
    history: dict = {}
    booster = xgb.train(
        PARAMS,
        dtrain,
        ROUNDS,
        evals=[(dtrain, "train"), (dvalid, "valid")],
        evals_result=history,
        early_stopping_rounds=50,
        callbacks=[cb],
        verbose_eval=False,
    )
    # left open for what the script logs next
    assert gitexp.active_run() is cb.run
    gitexp.log_metric("test_rmse", 0.5)
    cb.finish()
    rec, series = recorded(repo, cb.run.ref)
    assert (rec.status, rec.name, rec.tags, rec.experiment) == ("finished", "boost", ["gbm"], "xgb")
    params = rec.params["xgboost"]
    assert params["eta"] == 0.3 and params["max_depth"] == 3
    assert params["objective"] == "reg:squarederror" and params["eval_metric"] == ["rmse", "mae"]
    for data in ("train", "valid"):
        for metric in ("rmse", "mae"):
            steps, values = series[f"{data}-{metric}"]
            assert steps == list(range(ROUNDS))
            assert values == pytest.approx(history[data][metric])
    steps, rates = series["throughput/rounds_per_sec"]
    assert steps == list(range(ROUNDS)) and all(r > 0 for r in rates)
    assert series["test_rmse"] == ([0], [0.5])
    assert rec.summary.final["best_iteration"] == booster.best_iteration
    assert artifact_names(rec) == ["model.ubj"]
    model = restore(repo, cb.run.ref, "model.ubj", tmp_path / "model.ubj")
    again = xgb.Booster(model_file=str(model))
    np.testing.assert_array_equal(again.predict(dvalid), booster.predict(dvalid))
    fsck(repo)


def test_a_training_inside_an_active_run_logs_there_and_leaves_it_to_its_owner(repo, xgb):
    from gitexp.integrations.xgboost import GitExpCallback

    dtrain, dvalid = _data(xgb)
    with gitexp.start_run(experiment="mine", params={"data": "synthetic"}) as run:
        cb = GitExpCallback(log_model=False)
        xgb.train(PARAMS, dtrain, 3, evals=[(dvalid, "valid")], callbacks=[cb], verbose_eval=False)
        cb.finish()  # not its run: nothing happens
        assert cb.run is run and gitexp.active_run() is run
        run.log_metric("after", 1.0)
    rec, series = recorded(repo, run.ref)
    assert rec.params["data"] == "synthetic" and rec.params["xgboost"]["max_depth"] == 3
    assert series["valid-rmse"][0] == [0, 1, 2] and "after" in series
    assert rec.artifacts == [] and run_refs(repo) == [run.ref]


def test_under_git_exp_run_the_callback_logs_into_that_run(repo, xgb):
    ref = under_git_exp_run(
        repo,
        """
        import numpy as np, xgboost as xgb, gitexp
        from gitexp.integrations.xgboost import GitExpCallback

        rng = np.random.default_rng(1)
        x = rng.normal(size=(300, 4)); y = x.sum(axis=1)
        d = xgb.DMatrix(x, label=y)
        booster = xgb.train({"max_depth": 2}, d, 5, evals=[(d, "train")],
                            callbacks=[GitExpCallback(experiment="ignored")], verbose_eval=False)
        gitexp.log_summary({"final_rmse": float(booster.eval(d).split(":")[1])})
        """,
    )
    assert run_refs(repo) == [ref]  # no second run
    rec, series = recorded(repo, ref)
    assert rec.experiment == "fw" and rec.status == "finished"
    assert rec.params["xgboost"]["max_depth"] == 2
    assert series["train-rmse"][0] == [0, 1, 2, 3, 4]
    assert rec.summary.final["final_rmse"] == pytest.approx(series["train-rmse"][1][-1], rel=1e-5)
    assert artifact_names(rec) == ["model.ubj"]
