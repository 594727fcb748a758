"""git exp import mlflow: stores that real MLflow wrote in this session (an mlruns
directory, a sqlite database, a tracking server on 127.0.0.1; tests/mlflow_world.py)
come in whole, checked against what MLflow's own client reads from them."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from conftest import exp_state, fsck, run_refs
from mlflow_world import gitexp_runs, user_tags

MLFLOW_STATUS = {"FINISHED", "FAILED", "KILLED"}


def check_imported(repo, source: list[dict[str, Any]], experiment: str | None = None) -> None:
    """Every run of ``source`` is in ``repo``, as MLflow recorded it."""
    imported = {r["origin"]["run_id"]: r for r in gitexp_runs(repo).values() if r["origin"]}
    assert sorted(imported) == sorted(r["run_id"] for r in source)
    for want in source:
        got = imported[want["run_id"]]
        label = want["name"]
        assert got["name"] == want["name"], label
        assert got["experiment"] == (experiment or want["experiment"]), label
        assert got["status"] == want["status"], label
        assert (got["start_time"], got["end_time"]) == (want["start_time"], want["end_time"]), label
        assert got["params"] == want["params"], label
        assert user_tags(got["tags"]) == user_tags(want["tags"]), label
        assert got["origin"]["tags"] == want["tags"], label
        # every point, with MLflow's step and timestamp
        assert got["metrics"] == {k: [list(p) for p in v] for k, v in want["metrics"].items()}, (
            label
        )
        expected = dict(want["artifacts"])
        got_files = dict(got["artifacts"])
        for name, files in want["models"].items():
            assert (
                sorted(p[len(name) + 1 :] for p in got_files if p.startswith(name + "/")) == files
            )
            got_files = {p: h for p, h in got_files.items() if not p.startswith(name + "/")}
        assert got_files == expected, label
        if want["tags"].get("mlflow.note.content"):
            assert got["notes"] == [want["tags"]["mlflow.note.content"]]


@pytest.mark.slow
def test_an_mlruns_directory_comes_in_whole_and_importing_again_adds_nothing(
    mlflow_world, gx, repo
):
    out = gx.ok("import", "mlflow", str(mlflow_world.file_store))
    source = mlflow_world.real["file"]
    assert f"imported {len(source)} run(s)" in out
    check_imported(repo, source)
    child = next(r for r in gitexp_runs(repo).values() if r["name"] == "basic-child")
    parent = next(r for r in gitexp_runs(repo).values() if r["name"] == "basic")
    assert child["tags"]["mlflow.parentRunId"] == parent["run_id"]  # the git-exp id of the parent
    before = exp_state(repo)
    from gitexp.interop.mlflow_store import import_mlflow
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        again = import_mlflow(store, f"file://{mlflow_world.file_store}")
    assert (again.imported, len(again.already)) == ([], len(source))
    assert exp_state(repo) == before
    fsck(repo)


@pytest.mark.slow
def test_a_sqlite_database_comes_in_into_the_experiment_named(mlflow_world, repo):
    from gitexp.interop.mlflow_store import import_mlflow
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        report = import_mlflow(store, mlflow_world.sqlite_uri, experiment="legacy")
    source = mlflow_world.real["sqlite"]
    assert len(report.imported) == len(source) == 2
    assert all(r.startswith("legacy/") for r in report.imported)
    check_imported(repo, source, experiment="legacy")
    with ExpStore(repo) as store:  # once more, into another experiment: still nothing new
        again = import_mlflow(store, mlflow_world.sqlite_uri, experiment="elsewhere")
    assert (again.imported, len(again.already)) == ([], 2)
    fsck(repo)


@pytest.mark.slow
def test_a_tracking_server_comes_in_through_its_http_api(mlflow_world, repo):
    from gitexp.interop.mlflow_store import import_mlflow
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        report = import_mlflow(store, mlflow_world.server_url, only=["parity"])
    source = mlflow_world.real["server"]
    assert len(report.imported) == len(source) == 3
    check_imported(repo, source)
    (origin,) = {r["origin"]["uri"] for r in gitexp_runs(repo).values()}
    assert origin == mlflow_world.server_url
    # the model came through the server's artifact proxy, and loads back through the shim
    import gitexp.mlflow as mlflow

    run = next(r for r in gitexp_runs(repo).values() if r["name"] == "sklearn-model")
    model = mlflow.sklearn.load_model(f"runs:/{run['run_id']}/model")
    assert model.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == [0]
    fsck(repo)


def test_a_store_that_is_not_there_is_one_line_and_nothing_written(gx, repo):
    before = exp_state(repo)
    out = gx("import", "mlflow", str(repo / "no-such-mlruns"))
    assert out.returncode == 6, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"git exp: error: {repo / 'no-such-mlruns'}: no such MLflow store "
        "(a directory, a .db file or a URL)"
    ]
    out = gx("import", "mlflow", "sqlite:///no/such.db")
    assert out.returncode == 6 and "no MLflow database" in out.stderr
    assert exp_state(repo) == before


def test_without_mlflow_the_import_names_the_extra_to_install(repo, monkeypatch):
    from gitexp.errors import MissingExtra
    from gitexp.interop.mlflow_store import import_mlflow
    from gitexp.store import ExpStore

    (repo / "mlruns").mkdir()
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with ExpStore(repo) as store, pytest.raises(MissingExtra, match=r"git-exp\[mlflow\]"):
        import_mlflow(store, str(repo / "mlruns"))
    assert run_refs(repo) == []
