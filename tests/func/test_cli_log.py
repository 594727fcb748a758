"""``git exp log``: the leaderboard."""

from __future__ import annotations

import csv
import io
import json

import pytest

import gitexp
from conftest import finished_run


@pytest.fixture
def board(gx, repo):
    """Four runs in two experiments; params differ only in lr; one failed run."""
    ids = {}
    ids["a"] = finished_run(
        "mnist", {"lr": 0.1, "seed": 1}, {"acc": 0.7, "loss": 0.9}, tags=["baseline"], name="alpha"
    )
    ids["b"] = finished_run(
        "mnist", {"lr": 0.01, "seed": 1}, {"acc": 0.9, "loss": 0.3}, name="beta"
    )
    ids["c"] = finished_run("mnist/sub", {"lr": 0.5, "seed": 1}, {"acc": 0.8}, tags=["baseline"])
    with pytest.raises(ValueError):
        with gitexp.start_run(experiment="cifar", params={"lr": 0.2, "seed": 1}) as run:
            run.log_metric("loss", 2.0)
            raise ValueError
    ids["d"] = run.ref
    return {k: v.rsplit("/", 1)[1] for k, v in ids.items()}


def _json(gx, *args):
    return json.loads(gx.ok("log", "--json", *args))


def test_default_table(gx, board):
    out = gx.ok("log")
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:6] == ["id", "experiment", "name", "status", "start", "duration"]
    # params that differ are shown, params equal in every run are not
    assert "lr" in header and "seed" not in header
    assert "acc" in header and "loss" in header
    assert len(lines) == 5
    # newest first
    assert [ln.split()[0] for ln in lines[1:]] == [board["d"], board["c"], board["b"], board["a"]]
    row_b = next(ln for ln in lines if ln.startswith(board["b"]))
    assert "beta" in row_b and "finished" in row_b and "0.01" in row_b and "0.9" in row_b


def test_json_rows(gx, board):
    rows = _json(gx)
    assert [r["id"] for r in rows] == [board["d"], board["c"], board["b"], board["a"]]
    b = next(r for r in rows if r["id"] == board["b"])
    assert b["params.lr"] == 0.01 and b["metrics.acc"] == 0.9
    assert b["ref"] == f"refs/experiments/mnist/{board['b']}" and len(b["sha"]) == 40
    assert b["status"] == "finished" and b["experiment"] == "mnist" and b["name"] == "beta"


def test_json_and_csv_carry_every_param_whatever_the_filter(gx, board):
    """For scripts the shape does not depend on which runs are listed: params
    equal in every run (seed) and a single run's params are there too."""
    [one] = _json(gx, "--limit", "1", "-e", "mnist/sub")
    assert one["params.lr"] == 0.5 and one["params.seed"] == 1 and one["tags"] == ["baseline"]
    assert all(r["params.seed"] == 1 for r in _json(gx))
    header = next(csv.reader(io.StringIO(gx.ok("log", "--csv", "--limit", "1"))))
    assert "params.lr" in header and "params.seed" in header and "metrics.loss" in header
    assert header.index("params.seed") < header.index("metrics.loss")


def test_filters(gx, board):
    assert {r["id"] for r in _json(gx, "--experiment", "mnist")} == {
        board["a"],
        board["b"],
        board["c"],
    }
    assert {r["id"] for r in _json(gx, "-e", "mnist/sub")} == {board["c"]}
    assert [r["id"] for r in _json(gx, "--status", "failed")] == [board["d"]]
    assert {r["id"] for r in _json(gx, "-s", "failed", "-s", "finished")} == set(board.values())
    assert {r["id"] for r in _json(gx, "--tag", "baseline")} == {board["a"], board["c"]}
    assert _json(gx, "--tag", "baseline", "--status", "failed") == []


def test_sort_ascending_descending_and_missing_last(gx, board):
    assert [r["id"] for r in _json(gx, "--sort", "acc")] == [
        board["a"],
        board["c"],
        board["b"],
        board["d"],
    ]
    assert [r["id"] for r in _json(gx, "--sort=-acc")] == [
        board["b"],
        board["c"],
        board["a"],
        board["d"],
    ]
    assert [r["id"] for r in _json(gx, "--sort=-metrics.loss")][:3] == [
        board["d"],
        board["a"],
        board["b"],
    ]
    assert [r["id"] for r in _json(gx, "--sort", "params.lr")] == [
        board["b"],
        board["a"],
        board["d"],
        board["c"],
    ]


def test_limit_and_columns(gx, board):
    rows = _json(gx, "--sort=-acc", "--limit", "2", "--columns", "id,lr,acc")
    assert [r["id"] for r in rows] == [board["b"], board["c"]]
    assert set(rows[0]) == {"id", "params.lr", "metrics.acc", "ref", "sha"}
    out = gx.ok("log", "-n", "1", "--sort=-acc", "-c", "name,acc")
    assert out.split() == ["name", "acc", "beta", "0.9"]


def test_csv(gx, board):
    text = gx.ok("log", "--csv", "--sort", "acc", "--columns", "id,status,params.lr,metrics.acc")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "status", "params.lr", "metrics.acc"]
    assert rows[1] == [board["a"], "finished", "0.1", "0.7"]
    assert rows[-1] == [board["d"], "failed", "0.2", ""]


def test_params_equal_across_shown_runs_are_hidden(gx, board):
    header = gx.ok("log", "-e", "mnist/sub").splitlines()[0].split()
    assert "lr" not in header  # one run: nothing differs
    header = gx.ok("log", "-e", "mnist").splitlines()[0].split()
    assert "lr" in header and "seed" not in header


def test_nan_metric_renders_and_json_stays_valid(gx, repo):
    finished_run("n", {}, {"loss": float("nan")})
    assert _json(gx)[0]["metrics.loss"] == "NaN"
    assert "nan" in gx.ok("log").splitlines()[1]


def test_empty(gx, repo):
    proc = gx("log")
    assert proc.returncode == 0 and proc.stdout == "" and "no runs yet" in proc.stderr
    assert _json(gx) == []


def test_sort_by_a_param_of_mixed_types(gx, repo):
    """-p batch=32 in one run, -p batch=auto in another: numbers first, then text."""
    ids = {
        str(v): finished_run("m", {"batch": v}).rsplit("/", 1)[1] for v in ("auto", 32, 8, [1, 2])
    }
    order = [r["id"] for r in _json(gx, "--sort", "batch")]
    assert order[:2] == [ids["8"], ids["32"]]
    assert set(order[2:]) == {ids["auto"], ids["[1, 2]"]}
    desc = [r["id"] for r in _json(gx, "--sort=-batch")]
    assert desc == order[::-1]


def test_json_and_csv_together_is_a_usage_error(gx, board):
    proc = gx("log", "--json", "--csv")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "git exp: error: --json and --csv cannot be used together"


def test_runs_table_has_params_then_metrics_each_sorted(repo, board):
    names = gitexp.runs(repo=repo).column_names
    dynamic = [n for n in names if n.startswith(("params.", "metrics."))]
    params = [n for n in dynamic if n.startswith("params.")]
    metrics = [n for n in dynamic if n.startswith("metrics.")]
    assert dynamic == sorted(params) + sorted(metrics)
    assert names[: names.index(dynamic[0])] == [n for n in names if n not in dynamic]
