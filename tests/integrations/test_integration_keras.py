"""gitexp.integrations.keras against real Keras 3 on its PyTorch backend (CPU)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import gitexp
from conftest import fsck, run_refs
from frameworks import artifact_names, need, recorded, restore, under_git_exp_run

pytestmark = [
    pytest.mark.slow,
    # Keras's own deprecations (numpy 2's __array__ copy keyword): not git-exp's to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def keras():
    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "torch"  # read once, when keras is first imported
    try:
        need("torch", "keras")
        module = need("keras", "keras")
    finally:
        if before is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = before
    assert module.backend.backend() == "torch"
    return module


def _model(keras):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 6)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("float32")


def test_a_fit_is_recorded_in_a_run_the_callback_starts(repo, keras, tmp_path):
    from gitexp.integrations.keras import GitExpCallback

    x, y = _data()
    model = _model(keras)
    cb = GitExpCallback(experiment="keras", batch_size=32, log_every_n_batches=4)
    history = model.fit(
        x, y, epochs=3, batch_size=32, validation_split=0.2, callbacks=[cb], verbose=0
    ).history
    assert gitexp.active_run() is cb.run
    cb.finish()
    rec, series = recorded(repo, cb.run.ref)
    assert rec.status == "finished"
    params = rec.params["keras"]
    assert params["epochs"] == 3 and params["steps_per_epoch"] == 8 and params["batch_size"] == 32
    assert params["optimizer"]["name"] == "adam"
    assert params["optimizer"]["learning_rate"] == pytest.approx(0.01)
    assert params["model"]["params"] == model.count_params() == 6 * 8 + 8 + 8 + 1
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert series[key] == ([0, 1, 2], pytest.approx(history[key]))
    assert series["batch/loss"][0] == [4, 8, 12, 16, 20, 24]  # batches seen, every 4th
    steps, batches = series["throughput/batches_per_sec"]
    s_steps, samples = series["throughput/samples_per_sec"]
    assert steps == s_steps == [0, 1, 2] and all(b > 0 for b in batches)
    assert np.array(samples) / np.array(batches) == pytest.approx(32, rel=0.2)
    assert artifact_names(rec) == ["model.keras"]
    path = restore(repo, cb.run.ref, "model.keras", tmp_path / "model.keras")
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0))
    fsck(repo)


def test_a_fit_inside_an_active_run_logs_there_and_leaves_it_open(repo, keras):
    from gitexp.integrations.keras import GitExpCallback

    x, y = _data()
    with gitexp.start_run(experiment="mine") as run:
        cb = GitExpCallback(log_model=False)
        _model(keras).fit(x, y, epochs=2, batch_size=64, callbacks=[cb], verbose=0)
        assert cb.run is run and gitexp.active_run() is run
        cb.finish()  # not its run: nothing happens
        run.log_metric("test_accuracy", 0.9)
    rec, series = recorded(repo, run.ref)
    assert series["loss"][0] == [0, 1] and "test_accuracy" in series
    assert "samples_per_sec" not in str(sorted(series))  # no batch_size given: batches/s only
    assert series["throughput/batches_per_sec"][0] == [0, 1]
    assert rec.artifacts == [] and run_refs(repo) == [run.ref]


def test_under_git_exp_run_the_callback_logs_into_that_run(repo, keras):
    ref = under_git_exp_run(
        repo,
        """
        import numpy as np, keras, gitexp
        from gitexp.integrations.keras import GitExpCallback

        x = np.random.default_rng(1).normal(size=(64, 3)).astype("float32")
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        model.fit(x, x.sum(axis=1), epochs=2, batch_size=16, verbose=0,
                  callbacks=[GitExpCallback(batch_size=16)])
        gitexp.log_summary({"test_mse": float(model.evaluate(x, x.sum(axis=1), verbose=0))})
        """,
        env={"KERAS_BACKEND": "torch"},
    )
    assert run_refs(repo) == [ref]
    rec, series = recorded(repo, ref)
    assert rec.status == "finished" and rec.params["keras"]["batch_size"] == 16
    assert series["loss"][0] == [0, 1] and series["throughput/samples_per_sec"][0] == [0, 1]
    assert "test_mse" in rec.summary.final and artifact_names(rec) == ["model.keras"]
