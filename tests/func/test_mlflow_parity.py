"""The same MLflow scripts, run once under real MLflow and once through gitexp.mlflow
(tests/mlflow_world.py), record the same params, metric histories and artifacts."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import fsck
from mlflow_world import gitexp_runs, user_tags

pytestmark = pytest.mark.slow

# what MLflow writes that the shim does not: autolog's plots and estimator page
MLFLOW_ONLY = {"estimator.html", "training_confusion_matrix.png"}


def series(points: list[list[Any]]) -> list[tuple[int, float]]:
    return sorted((p[0], p[2]) for p in points)


def test_every_script_makes_the_same_runs_under_mlflow_and_through_the_shim(mlflow_world):
    real = mlflow_world.real_by_name("file")
    shim = gitexp_runs(mlflow_world.shim_repo)
    assert sorted(shim) == sorted(real)
    assert len(real) == 8  # basic, basic-child, client, client-reader, sklearn-model, ...
    for name, want in real.items():
        got = shim[name]
        assert got["experiment"] == want["experiment"] == "parity", name
        assert got["status"] == want["status"] == "FINISHED", name
        assert got["params"] == want["params"], name
        assert user_tags(got["tags"]) == user_tags(want["tags"]), name
        assert sorted(got["metrics"]) == sorted(want["metrics"]), name
        for key, points in want["metrics"].items():
            assert series(got["metrics"][key]) == series(points), (name, key)
    fsck(mlflow_world.shim_repo)


def test_metric_values_steps_and_given_timestamps_are_the_same(mlflow_world):
    real = mlflow_world.real_by_name("file")["basic"]["metrics"]
    shim = gitexp_runs(mlflow_world.shim_repo)["basic"]["metrics"]
    assert shim["lr_now"] == real["lr_now"] == [[7, 1_700_000_000_123, 0.001]]
    assert series(shim["loss"]) == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert series(shim["once"]) == series(real["once"]) == [(0, 3.5)]


def test_every_artifact_has_the_same_path_and_bytes(mlflow_world):
    real = mlflow_world.real_by_name("file")
    shim = gitexp_runs(mlflow_world.shim_repo)
    for name, want in real.items():
        expected = {p: h for p, h in want["artifacts"].items() if p not in MLFLOW_ONLY}
        got = {p: h for p, h in shim[name]["artifacts"].items() if not p.startswith("model/")}
        assert got == expected, name
    basic = shim["basic"]["artifacts"]
    assert {"notes.md", "docs/notes.md", "results/a.txt", "results/sub/b.txt"} <= set(basic)
    assert {"plots/loss.png", "images/ramp.png", "config/model.yaml"} <= set(basic)


def test_models_are_stored_with_the_run_and_load_back_the_same(mlflow_world):
    """MLflow 3 keeps a logged model beside the run; git-exp keeps it in the run's
    artifacts. Both have the MLflow layout, and the model loaded back from each
    predicted the same (predictions.json is compared byte for byte above)."""
    real = mlflow_world.real_by_name("file")
    shim = gitexp_runs(mlflow_world.shim_repo)
    for name in ("sklearn-model", "autolog-classifier", "autolog-regressor"):
        assert {"MLmodel", "requirements.txt"} <= set(real[name]["models"]["model"]), name
        files = {p for p in shim[name]["artifacts"] if p.startswith("model/")}
        assert {"model/MLmodel", "model/requirements.txt", "model/model.pkl"} <= files, name
    assert "predictions.json" in shim["sklearn-model"]["artifacts"]


def test_autolog_records_the_params_and_training_metrics_mlflow_records(mlflow_world):
    real = mlflow_world.real_by_name("file")
    shim = gitexp_runs(mlflow_world.shim_repo)
    for name in ("autolog-classifier", "autolog-regressor"):
        assert shim[name]["params"] == real[name]["params"], name
        assert set(shim[name]["metrics"]) == set(real[name]["metrics"]), name
        for key, points in real[name]["metrics"].items():
            assert series(shim[name]["metrics"][key]) == series(points), (name, key)
        assert shim[name]["tags"]["estimator_class"] == real[name]["tags"]["estimator_class"]
    assert "training_roc_auc" in shim["autolog-classifier"]["metrics"]
    assert "training_root_mean_squared_error" in shim["autolog-regressor"]["metrics"]
