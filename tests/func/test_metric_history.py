"""gitexp.metric_history: every point of a metric, with its step, for plotting."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

import gitexp
from gitexp.errors import RunNotFound


def _run(repo, lr, n):
    with gitexp.start_run(experiment="curves", params={"lr": lr}, repo=repo) as run:
        for step in range(n):
            run.log_metrics({"loss": lr / (step + 1), "acc": step / n}, step=step * 10)
        return run.id


def test_the_whole_history_of_many_runs_with_steps(repo):
    a, b = _run(repo, 0.1, 500), _run(repo, 0.2, 3)
    table = gitexp.metric_history([a, f"curves/{b}"], repo=repo)
    assert table.schema.names == ["id", "experiment", "key", "step", "value", "time"]
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert table.num_rows == 2 * 500 + 2 * 3  # not the 40-point sample of get_run
    rows = table.to_pylist()
    loss_a = [(r["step"], r["value"]) for r in rows if r["id"] == a and r["key"] == "loss"]
    assert loss_a == [(s * 10, 0.1 / (s + 1)) for s in range(500)]
    assert [r["id"] for r in rows] == [a] * 1000 + [b] * 6  # runs in the order given
    assert {r["experiment"] for r in rows} == {"curves"}
    now = dt.datetime.now(dt.timezone.utc)
    assert all(now - dt.timedelta(minutes=5) < r["time"] <= now for r in rows)


def test_keys_keep_only_those_metrics_and_one_address_is_enough(repo):
    a = _run(repo, 0.1, 5)
    table = gitexp.metric_history(a, keys="acc", repo=repo)
    assert set(table.column("key").to_pylist()) == {"acc"} and table.num_rows == 5
    assert gitexp.metric_history(a, keys=["nope"], repo=repo).num_rows == 0


def test_ids_from_runs_work_and_the_table_plots_through_pandas(repo):
    import pandas as pd

    for lr in (0.1, 0.2):
        _run(repo, lr, 4)
    ids = gitexp.runs(experiment="curves", repo=repo).column("id").to_pylist()
    frame = gitexp.metric_history(ids, keys="loss", repo=repo).to_pandas()
    wide = frame.pivot(index="step", columns="id", values="value")
    assert isinstance(wide, pd.DataFrame) and wide.shape == (4, 2)


def test_an_unknown_run_is_an_error_naming_it(repo):
    with pytest.raises(RunNotFound, match="nosuchrun"):
        gitexp.metric_history("nosuchrun", repo=repo)
