"""gitexp.integrations.lightgbm against real LightGBM (CPU)."""

from __future__ import annotations

import numpy as np
import pytest

import gitexp
from conftest import fsck, run_refs
from frameworks import artifact_names, need, recorded, restore, under_git_exp_run

pytestmark = pytest.mark.slow

PARAMS = {
    "objective": "regression",
    "num_leaves": 7,
    "learning_rate": 0.2,
    "metric": ["l2", "l1"],
    "verbose": -1,
    "num_threads": 1,
}
ROWS = 400


@pytest.fixture(scope="module")
def lgb():
    return need("lightgbm", "lightgbm")


def _data(lgb):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS + 100, 5))
    y = x @ rng.normal(size=5) + 0.1 * rng.normal(size=ROWS + 100)
    train = lgb.Dataset(x[:ROWS], label=y[:ROWS])
    return train, lgb.Dataset(x[ROWS:], label=y[ROWS:], reference=train), x[ROWS:]


def test_a_training_is_recorded_in_a_run_the_callback_starts(repo, lgb, tmp_path):
    from gitexp.integrations.lightgbm import GitExpCallback

    train, valid, x_valid = _data(lgb)
    history: dict = {}
    cb = GitExpCallback(experiment="lgb", name="leaves7")
    booster = lgb.train(
        PARAMS,
        train,
        num_boost_round=10,
        valid_sets=[train, valid],
        valid_names=["train", "valid"],
        callbacks=[lgb.record_evaluation(history), cb],
    )
    assert gitexp.active_run() is cb.run
    cb.finish()
    rec, series = recorded(repo, cb.run.ref)
    assert (rec.status, rec.name) == ("finished", "leaves7")
    assert rec.params["lightgbm"]["num_leaves"] == 7
    assert rec.params["lightgbm"]["metric"] == ["l2", "l1"]
    for data in ("train", "valid"):
        for metric in ("l2", "l1"):
            steps, values = series[f"{data}-{metric}"]
            assert steps == list(range(10))
            assert values == pytest.approx(history[data][metric])
    # rates from the second round on; each round goes over every training row
    r_steps, rounds = series["throughput/rounds_per_sec"]
    s_steps, samples = series["throughput/samples_per_sec"]
    assert r_steps == s_steps == list(range(1, 10))
    assert all(r > 0 for r in rounds)
    assert np.median(np.array(samples) / np.array(rounds)) == pytest.approx(ROWS, rel=0.25)
    assert artifact_names(rec) == ["model.txt"]
    model = restore(repo, cb.run.ref, "model.txt", tmp_path / "model.txt")
    again = lgb.Booster(model_file=str(model))
    np.testing.assert_allclose(again.predict(x_valid), booster.predict(x_valid))
    fsck(repo)


def test_a_second_training_in_the_same_process_gets_a_run_of_its_own(repo, lgb):
    from gitexp.integrations.lightgbm import GitExpCallback

    train, valid, _ = _data(lgb)
    first, second = GitExpCallback(log_model=False), GitExpCallback(log_model=False)
    lgb.train(PARAMS, train, 3, valid_sets=[valid], valid_names=["valid"], callbacks=[first])
    lgb.train(
        {**PARAMS, "num_leaves": 3},
        train,
        4,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[second],
    )
    assert first.run is not second.run and gitexp.active_run() is second.run
    second.finish()
    first.finish()
    assert len(run_refs(repo)) == 2
    (_, s1), (rec2, s2) = recorded(repo, first.run.ref), recorded(repo, second.run.ref)
    assert s1["valid-l2"][0] == [0, 1, 2] and s2["valid-l2"][0] == [0, 1, 2, 3]
    assert rec2.params["lightgbm"]["num_leaves"] == 3


def test_early_stopping_records_every_round_up_to_the_stop(repo, lgb):
    from gitexp.integrations.lightgbm import GitExpCallback

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    train = lgb.Dataset(x[:200], label=rng.normal(size=200))  # noise: validation gets worse
    valid = lgb.Dataset(x[200:], label=rng.normal(size=100), reference=train)
    cb = GitExpCallback()
    booster = lgb.train(
        PARAMS,
        train,
        200,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[cb, lgb.early_stopping(3, verbose=False)],
    )
    cb.finish()
    rec, series = recorded(repo, cb.run.ref)
    steps = series["valid-l2"][0]
    # the round that stopped training too: patience (3) past the best one
    assert steps == list(range(booster.best_iteration + 3)) and len(steps) < 200
    assert rec.artifacts == []  # no last round: no end-of-training hook to store the model


def test_under_git_exp_run_the_callback_logs_into_that_run(repo, lgb):
    ref = under_git_exp_run(
        repo,
        """
        import numpy as np, lightgbm as lgb
        from gitexp.integrations.lightgbm import GitExpCallback

        rng = np.random.default_rng(1)
        x = rng.normal(size=(200, 3))
        d = lgb.Dataset(x, label=x.sum(axis=1))
        lgb.train({"objective": "regression", "verbose": -1, "num_leaves": 5}, d, 4,
                  valid_sets=[d], valid_names=["train"], callbacks=[GitExpCallback()])
        """,
    )
    assert run_refs(repo) == [ref]
    rec, series = recorded(repo, ref)
    assert rec.status == "finished" and rec.params["lightgbm"]["num_leaves"] == 5
    assert series["train-l2"][0] == [0, 1, 2, 3]
    assert artifact_names(rec) == ["model.txt"]
