"""git exp log --where/--group-by/--baseline, git exp export and gitexp.runs(where=)
through the real command, on real runs."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest

import gitexp

SWEEP = [(lr, seed) for lr in (0.1, 0.01) for seed in range(3)]


@pytest.fixture
def sweep(repo):
    ids = {}
    for lr, seed in SWEEP:
        tags = ["baseline"] if (lr, seed) == (0.1, 0) else ["owner=ana"]
        with gitexp.start_run(
            experiment="sweep", params={"lr": lr, "seed": seed}, tags=tags, repo=repo
        ) as run:
            for step in range(4):
                run.log_metrics({"acc": lr * 5 + seed / 100 + step / 1000}, step=step)
        ids[(lr, seed)] = run.id
    with gitexp.start_run(experiment="other", repo=repo) as run:  # no params, no metrics
        pass
    ids["bare"] = run.id
    return ids


def log_json(gx, *args):
    return json.loads(gx.ok("log", "--json", *args))


def test_where_filters_the_leaderboard(gx, sweep):
    rows = log_json(gx, "--where", "params.lr < 0.05 and acc > 0.06 or tags.baseline")
    assert {r["id"] for r in rows} == {sweep[(0.01, 1)], sweep[(0.01, 2)], sweep[(0.1, 0)]}
    rows = log_json(gx, "-w", 'tags.owner == "ana" and not (params.seed == 0)', "--sort=acc")
    assert [r["id"] for r in rows] == [
        sweep[(0.01, 1)],
        sweep[(0.01, 2)],
        sweep[(0.1, 1)],
        sweep[(0.1, 2)],
    ]
    # a run without lr is kept by "not": comparisons with missing values are false
    rows = log_json(gx, "--where", "not (params.lr < 1)")
    assert [r["id"] for r in rows] == [sweep["bare"]]
    assert log_json(gx, "--where", 'experiment ~ "sw*" and status == "finished"', "-n", "2")


def test_where_errors_are_one_line_with_exit_code_2(gx, sweep):
    out = gx("log", "--where", "params.lr <")
    assert out.returncode == 2
    assert out.stderr == "git exp: error: where: expected a value after '<' at column 12\n"
    out = gx("log", "--where", "ac > 1")
    assert out.returncode == 2
    assert "no column, metric or param named 'ac' (did you mean metrics.acc?)" in out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_group_by_shows_mean_std_count_per_param_value(gx, sweep):
    rows = log_json(gx, "-e", "sweep", "--group-by", "lr", "--sort=-acc")
    assert [r["params.lr"] for r in rows] == [0.1, 0.01]
    top = rows[0]
    assert top["runs"] == 3 and top["count(metrics.acc)"] == 3
    assert top["mean(metrics.acc)"] == pytest.approx(0.5 + 0.01 + 0.003)
    assert top["std(metrics.acc)"] == pytest.approx(0.01)
    assert sorted(top["ids"]) == sorted(sweep[(0.1, s)] for s in range(3))
    table = gx.ok("log", "-e", "sweep", "--group-by", "lr")
    assert table.splitlines()[0].split()[:3] == ["lr", "runs", "mean(metrics.acc)"]
    out = gx("log", "--group-by", "nope")
    assert out.returncode == 2 and "no column or param 'nope'" in out.stderr


def test_baseline_adds_delta_columns(gx, sweep):
    base = sweep[(0.1, 0)]
    rows = log_json(gx, "-e", "sweep", "--baseline", base)
    by_id = {r["id"]: r for r in rows}
    assert by_id[base]["delta(metrics.acc)"] == 0.0
    assert by_id[sweep[(0.01, 0)]]["delta(metrics.acc)"] == pytest.approx(-0.45)
    text = gx.ok("log", "-e", "sweep", "--baseline", base, "--csv")
    header = next(csv.reader(text.splitlines()))
    assert header[header.index("metrics.acc") + 1] == "delta(metrics.acc)"
    grouped = log_json(gx, "-e", "sweep", "--group-by", "lr", "--baseline", base)
    assert grouped[0]["delta(mean(metrics.acc))"] == pytest.approx(-0.45 + 0.01)
    out = gx("log", "--baseline", "no-such-run")
    assert out.returncode == 4 and len(out.stderr.splitlines()) == 1


def test_export_parquet_and_csv_with_metric_points(gx, sweep, repo):
    gx.ok("export", "-o", "runs.parquet", "--metrics")
    runs = pq.read_table(repo / "runs.parquet")
    assert runs.num_rows == len(SWEEP) + 1
    assert {"id", "status", "params.lr", "metrics.acc", "tags"} <= set(runs.column_names)
    points = pq.read_table(repo / "runs.metrics.parquet")
    assert points.column_names == ["id", "experiment", "key", "step", "value", "time"]
    assert points.num_rows == len(SWEEP) * 4
    gx.ok("export", "-o", "out.csv", "--metrics", "--where", "params.lr == 0.1")
    with open(repo / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {r["params.lr"] for r in rows} == {"0.1"}
    assert json.loads(rows[0]["tags"])  # lists become JSON text in CSV
    with open(repo / "out.metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 12


def test_export_refuses_unknown_formats_and_missing_directories(gx, sweep, repo):
    out = gx("export", "-o", "runs.xlsx")
    assert out.returncode == 2
    assert "name it .parquet or .csv" in out.stderr and len(out.stderr.splitlines()) == 1
    out = gx("export", "-o", "nowhere/runs.csv")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    assert not (repo / "runs.xlsx").exists()


def test_runs_where_in_python(sweep, repo):
    table = gitexp.runs(where="params.lr == 0.01 and params.seed > 0", repo=repo)
    assert sorted(table.column("id").to_pylist()) == sorted([sweep[(0.01, 1)], sweep[(0.01, 2)]])
    with pytest.raises(gitexp.errors.UsageError, match=r"^where: expected a value"):
        gitexp.runs(where="acc >", repo=repo)


def test_export_keeps_params_of_mixed_and_nested_types(gx, repo):
    with gitexp.start_run(experiment="odd", params={"opt": {}, "mixed": "a"}, repo=repo) as r:
        r.log_metric("m", float("nan"))
    with gitexp.start_run(experiment="odd", params={"mixed": 3, "layers": [1, 2]}, repo=repo):
        pass
    gx.ok("export", "-o", "odd.parquet", "--metrics")
    rows = pq.read_table(repo / "odd.parquet").to_pylist()
    assert len(rows) == 2
    values = {json.dumps(r["params.mixed"]) for r in rows}
    assert len(values) == 2  # mixed types survive as JSON text, not as an error
    assert pq.read_table(repo / "odd.metrics.parquet").num_rows == 1
    gx.ok("export", "-o", "odd.csv")
    with open(repo / "odd.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2
