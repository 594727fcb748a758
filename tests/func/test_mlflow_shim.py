"""gitexp.mlflow in this process: MLflow's calls record git-exp runs, read back with
MLflow's names; what is not supported raises an error that names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fsck, git, run_refs, show_json
from frameworks import need


@pytest.fixture
def mlflow(repo):
    import gitexp.mlflow as shim
    from gitexp.mlflow._session import SESSION

    SESSION.__init__()  # a fresh session per test: no experiment, no open run
    yield shim
    for run_id in list(SESSION.open):
        SESSION.end(run_id)
    SESSION.__init__()


def test_a_run_started_through_the_shim_is_a_git_exp_run_read_back_with_mlflow_names(mlflow, repo):
    mlflow.set_experiment("mnist")
    with mlflow.start_run(run_name="first", tags={"team": "nlp"}) as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"epochs": 3, "use_bn": True, "seed": None})
        mlflow.log_metric("loss", 0.5)
        mlflow.log_metric("loss", 0.25)  # MLflow's step defaults to 0, every time
        mlflow.log_metrics({"acc": 0.9}, step=4)
    got = mlflow.get_run(run.info.run_id)
    assert got.info.experiment_id == "mnist"
    assert got.info.run_name == "first"
    assert got.info.status == "FINISHED"
    assert got.info.end_time >= got.info.start_time
    assert got.data.params == {"lr": "0.01", "epochs": "3", "use_bn": "True", "seed": "None"}
    assert got.data.metrics == {"loss": 0.25, "acc": 0.9}
    assert got.data.tags == {"team": "nlp", "mlflow.runName": "first"}
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (0, 0.25)]
    ref = f"refs/experiments/mnist/{run.info.run_id}"
    assert run_refs(repo) == [ref]
    params = show_json(repo, ref, "params.json")
    assert params == {"lr": 0.01, "epochs": 3, "use_bn": True, "seed": None}  # values kept
    assert show_json(repo, ref, "run.json")["tags"] == ["team=nlp"]
    fsck(repo)


def test_a_metric_keeps_the_timestamp_it_was_logged_with(mlflow):
    with mlflow.start_run() as run:
        mlflow.log_metric("lr", 0.1, step=3, timestamp=1_700_000_000_123)
    (point,) = mlflow.MlflowClient().get_metric_history(run.info.run_id, "lr")
    assert (point.step, point.value, point.timestamp) == (3, 0.1, 1_700_000_000_123)


def test_nested_runs_name_their_parent_and_end_innermost_first(mlflow):
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child", nested=True) as child:
            assert mlflow.active_run().info.run_id == child.info.run_id
        assert mlflow.active_run().info.run_id == parent.info.run_id
    assert mlflow.active_run() is None
    tags = mlflow.get_run(child.info.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert mlflow.last_active_run().info.run_id == parent.info.run_id


def test_a_second_top_level_run_while_one_is_active_is_refused_as_in_mlflow(mlflow):
    from gitexp.errors import UsageError

    with mlflow.start_run() as run:
        with pytest.raises(UsageError, match=f"run {run.info.run_id} is already active"):
            mlflow.start_run()


def test_an_exception_in_the_block_fails_the_run_with_its_traceback(mlflow, repo):
    with pytest.raises(ZeroDivisionError), mlflow.start_run() as run:
        1 / 0  # noqa: B018
    info = show_json(repo, f"refs/experiments/default/{run.info.run_id}", "run.json")
    assert info["status"] == "failed"
    assert "ZeroDivisionError" in info["error"]
    assert mlflow.get_run(run.info.run_id).info.status == "FAILED"


def test_params_do_not_change_once_logged_as_in_mlflow(mlflow):
    from gitexp.errors import UsageError

    with mlflow.start_run():
        mlflow.log_param("lr", 0.1)
        mlflow.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(UsageError, match=r"param 'lr' was logged as '0\.1' already"):
            mlflow.log_param("lr", 0.2)


def test_setting_a_tag_again_replaces_its_value(mlflow):
    with mlflow.start_run() as run:
        mlflow.set_tag("stage", "dev")
        mlflow.set_tags({"stage": "prod", "owner": "ana"})
        mlflow.set_tag("mlflow.note.content", "a note")
        mlflow.delete_tag("owner")
    got = mlflow.get_run(run.info.run_id)
    assert got.data.tags == {"stage": "prod", "mlflow.note.content": "a note"}


def test_a_tag_git_exp_cannot_hold_is_refused_with_the_call_named(mlflow):
    from gitexp.errors import UsageError

    with mlflow.start_run(), pytest.raises(UsageError, match=r"mlflow.set_tag\('features'"):
        mlflow.set_tag("features", "a,b")


def test_calls_the_shim_does_not_map_raise_an_error_naming_them(mlflow):
    from gitexp.errors import UnsupportedCall

    with pytest.raises(UnsupportedCall, match=r"mlflow\.log_input is not supported"):
        mlflow.log_input(None)
    with pytest.raises(UnsupportedCall, match=r"mlflow\.register_model"):
        mlflow.register_model("runs:/x/model", "m")
    with pytest.raises(UnsupportedCall, match=r"MlflowClient\.create_registered_model"):
        mlflow.MlflowClient().create_registered_model("m")
    with pytest.raises(UnsupportedCall, match=r"mlflow\.sklearn\.eval_and_log_metrics"):
        mlflow.sklearn.eval_and_log_metrics(None, None, None)
    with pytest.raises(UnsupportedCall, match=r"mlflow.start_run\(log_system_metrics=...\)"):
        mlflow.start_run(log_system_metrics=True)
    with pytest.raises(UnsupportedCall, match=r"mlflow.pytorch.autolog"):
        mlflow.pytorch.autolog()
    with pytest.raises(UnsupportedCall, match=r"load_model\('models:/m/1'\)"):
        mlflow.sklearn.load_model("models:/m/1")
    # an unsupported name is a missing attribute to Python itself
    assert not hasattr(mlflow, "log_input")
    with pytest.raises(ImportError, match="log_input"):
        from gitexp.mlflow import log_input  # noqa: F401


def test_set_tracking_uri_takes_a_repository_path_and_refuses_a_server(mlflow, repo, tmp_path):
    from gitexp.errors import NotARepository, UnsupportedCall

    with pytest.raises(UnsupportedCall, match="set_tracking_uri"):
        mlflow.set_tracking_uri("http://127.0.0.1:5000")
    with pytest.raises(NotARepository):
        mlflow.set_tracking_uri(str(tmp_path / "elsewhere"))
    mlflow.set_tracking_uri(f"file://{repo}/mlruns")  # a path inside the repository
    assert mlflow.get_tracking_uri() == f"file://{repo}"


def test_search_runs_gives_mlflows_columns_and_understands_its_filter_strings(mlflow):
    mlflow.set_experiment("sweep")
    for lr, acc in ((0.01, 0.9), (0.1, 0.6), (0.001, 0.95)):
        with mlflow.start_run(run_name=f"lr-{lr}", tags={"team": "cv"}):
            mlflow.log_param("lr", lr)
            mlflow.log_metric("acc", acc)
    mlflow.set_experiment("other")
    with mlflow.start_run(run_name="elsewhere"):
        mlflow.log_param("lr", 0.01)
    df = mlflow.search_runs(
        experiment_names=["sweep"],
        filter_string="metrics.acc > 0.7 and tags.team = 'cv'",
        order_by=["metrics.acc DESC"],
    )
    assert list(df["tags.mlflow.runName"]) == ["lr-0.001", "lr-0.01"]
    assert list(df.columns[:6]) == [
        "run_id",
        "experiment_id",
        "status",
        "artifact_uri",
        "start_time",
        "end_time",
    ]
    assert {"params.lr", "metrics.acc", "tags.team"} <= set(df.columns)
    assert list(df["params.lr"]) == ["0.001", "0.01"]  # text, as MLflow gives params
    assert str(df["start_time"].dtype).startswith("datetime64")
    assert (df["end_time"] >= df["start_time"]).all()
    # MLflow compares params as text: '0.01' finds the run whose lr is the number 0.01
    every = mlflow.search_runs(search_all_experiments=True, filter_string="params.lr = '0.01'")
    assert sorted(every["tags.mlflow.runName"]) == ["elsewhere", "lr-0.01"]
    runs = mlflow.search_runs(["sweep"], "attributes.run_name LIKE 'lr-0.0%'", output_format="list")
    assert sorted(r.info.run_name for r in runs) == ["lr-0.001", "lr-0.01"]
    with pytest.raises(mlflow.MlflowException, match="end_time"):
        mlflow.search_runs(filter_string="attributes.end_time > 0")


def test_artifacts_are_listed_and_downloaded_byte_for_byte(mlflow, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a\n")
    (data / "sub" / "b.bin").write_bytes(os.urandom(1000))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(data), artifact_path="out")
        mlflow.log_artifact(str(data / "a.txt"))
        mlflow.log_dict({"k": [1, 2]}, "cfg/params.yaml")
        mlflow.log_text("hi", "note.txt")
    client = mlflow.MlflowClient()
    rid = run.info.run_id
    assert [(f.path, f.is_dir) for f in client.list_artifacts(rid)] == [
        ("a.txt", False),
        ("cfg", True),
        ("note.txt", False),
        ("out", True),
    ]
    assert [f.path for f in client.list_artifacts(rid, "out")] == ["out/a.txt", "out/sub"]
    where = client.download_artifacts(rid, "out", str(tmp_path / "dl"))
    assert (tmp_path / "dl" / "out" / "sub" / "b.bin").read_bytes() == (
        data / "sub" / "b.bin"
    ).read_bytes()
    assert where == str(tmp_path / "dl" / "out")
    yaml_path = mlflow.artifacts.download_artifacts(f"runs:/{rid}/cfg/params.yaml")
    assert Path(yaml_path).read_text() == "k:\n- 1\n- 2\n"
    note = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="note.txt")
    assert Path(note).read_text() == "hi"


def test_the_client_records_a_run_by_id_without_making_it_the_active_run(mlflow):
    client = mlflow.MlflowClient()
    run = client.create_run("jobs", run_name="by-id")
    rid = run.info.run_id
    assert mlflow.active_run() is None
    client.log_param(rid, "k", 1)
    client.log_batch(
        rid,
        metrics=[mlflow.entities.Metric("m", 2.0, 1_700_000_000_000, 5)],
        params=[mlflow.entities.Param("p", "x")],
        tags=[mlflow.entities.RunTag("t", "y")],
    )
    client.set_terminated(rid, "KILLED")
    got = client.get_run(rid)
    assert (got.info.status, got.info.experiment_id) == ("KILLED", "jobs")
    assert got.data.params == {"k": "1", "p": "x"}
    assert got.data.tags["t"] == "y"
    # a tag on a run no longer open here is a commit on its ref, as `git exp tag`
    client.set_tag(rid, "t", "z")
    assert client.get_run(rid).data.tags["t"] == "z"
    with pytest.raises(mlflow.MlflowException, match="not being recorded by this process"):
        client.log_metric(rid, "m", 1.0)


def test_resuming_a_run_by_id_logs_more_into_it(mlflow):
    with mlflow.start_run(run_name="long") as run:
        mlflow.log_metric("loss", 1.0, step=0)
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_metric("loss", 0.5, step=1)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5)]
    assert mlflow.get_run(run.info.run_id).info.run_name == "long"


@pytest.mark.slow
def test_autolog_records_the_params_training_metrics_and_model_of_a_fit(mlflow):
    need("sklearn", "mlflow")  # MLflow brings scikit-learn
    import numpy as np
    from sklearn.linear_model import LinearRegression

    X = np.arange(20, dtype=float).reshape(10, 2)
    y = X @ np.array([1.0, 2.0]) + 0.5
    mlflow.autolog()
    try:
        model = LinearRegression().fit(X, y)  # outside a run: autolog starts and ends one
    finally:
        mlflow.sklearn.autolog(disable=True)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.data.params["fit_intercept"] == "True"
    assert run.data.metrics["training_r2_score"] == pytest.approx(1.0)
    assert set(run.data.metrics) == {
        "training_mean_squared_error",
        "training_root_mean_squared_error",
        "training_mean_absolute_error",
        "training_r2_score",
        "training_score",
    }
    assert run.data.tags["estimator_class"] == "sklearn.linear_model._base.LinearRegression"
    loaded = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    assert np.allclose(loaded.predict(X), model.predict(X))
    LinearRegression().fit(X, y)  # disabled: no new run
    assert len(mlflow.search_runs(search_all_experiments=True)) == 1


@pytest.mark.slow
def test_a_pytorch_model_is_stored_as_an_artifact_and_loaded_back(mlflow):
    torch = need("torch", "test")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(net, name="net")
    assert info.model_uri.endswith("/net")
    loaded = mlflow.pytorch.load_model(info.model_uri)
    x = torch.randn(5, 3)
    assert torch.equal(loaded(x), net(x))
    files = [f.path for f in mlflow.MlflowClient().list_artifacts(info.run_id, "net/data")]
    assert files == ["net/data/model.pth", "net/data/pickle_module_info.txt"]


@pytest.mark.slow
def test_under_git_exp_run_the_script_logs_into_the_run_git_exp_started(gx, repo):
    script = repo / "train_mlflow.py"
    script.write_text(
        "import gitexp.mlflow as mlflow\n"
        "with mlflow.start_run(run_name='inner'):\n"
        "    mlflow.log_param('lr', 0.1)\n"
        "    mlflow.log_metric('loss', 0.5, step=1)\n"
    )
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "script", cwd=repo)
    gx.ok("run", "-e", "cli", "-p", "epochs=2", "--", sys.executable, "train_mlflow.py")
    (ref,) = run_refs(repo)
    assert ref.startswith("refs/experiments/cli/")
    assert show_json(repo, ref, "params.json") == {"epochs": 2, "lr": 0.1}
    info = show_json(repo, ref, "run.json")
    assert info["status"] == "finished" and info["name"] == "inner"


def test_a_figure_and_an_image_are_written_as_mlflow_writes_them(mlflow, tmp_path):
    need("PIL", "mlflow")  # MLflow brings Pillow
    import numpy as np

    image = np.linspace(0, 1, 2 * 3 * 3).reshape(2, 3, 3)
    with mlflow.start_run() as run:
        mlflow.log_image(image, "img/ramp.png")
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="img/ramp.png")
    from PIL import Image

    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (2, 3, 3)
    assert (pixels == (image * 255).astype(np.uint8)).all()


def test_the_shim_imports_nothing_heavy_until_it_is_used(repo):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, gitexp.mlflow, gitexp.wandb\n"
            "print(sorted(m for m in ('sklearn', 'torch', 'matplotlib', 'pandas', 'mlflow', "
            "'PIL') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_log_dict_writes_json_as_mlflow_does(mlflow):
    with mlflow.start_run() as run:
        mlflow.log_dict({"b": 1, "a": [1, 2]}, "d.json")
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="d.json")
    assert Path(path).read_text() == json.dumps({"b": 1, "a": [1, 2]}, indent=2)
