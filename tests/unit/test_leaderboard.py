"""--group-by and --baseline as functions on rows."""

from __future__ import annotations

import math

import pytest

from gitexp.errors import UsageError
from gitexp.leaderboard import (
    baseline_columns,
    group_columns,
    group_rows,
    resolve_column,
    sort_rows,
    with_baseline,
)


def run(i, lr, seed, acc, **extra):
    return {"id": f"r{i}", "params.lr": lr, "params.seed": seed, "metrics.acc": acc, **extra}


ROWS = [
    run(1, 0.1, 0, 0.90),
    run(2, 0.1, 1, 0.92),
    run(3, 0.1, 2, 0.94),
    run(4, 0.01, 0, 0.80),
    run(5, 0.01, 1, 0.80),
    {"id": "r6", "params.seed": 0},  # no lr, no acc
]


def test_group_by_a_param_gives_mean_std_count_over_seeds():
    groups = group_rows(ROWS, ["lr"])
    assert [g["params.lr"] for g in groups] == [0.01, 0.1, None]  # by value, missing last
    g01, g1, none = groups
    assert g1["runs"] == 3 and g1["count(metrics.acc)"] == 3
    assert g1["mean(metrics.acc)"] == pytest.approx(0.92)
    assert g1["std(metrics.acc)"] == pytest.approx(0.02)  # sample std (n-1)
    assert g1["ids"] == ["r1", "r2", "r3"]
    assert g01["std(metrics.acc)"] == 0.0  # identical values: exactly zero
    assert none["runs"] == 1 and none["count(metrics.acc)"] == 0
    assert none["mean(metrics.acc)"] is None and none["std(metrics.acc)"] is None
    assert group_columns(groups, ["lr"]) == [
        "params.lr",
        "runs",
        "mean(metrics.acc)",
        "std(metrics.acc)",
        "count(metrics.acc)",
        "ci95(metrics.acc)",
    ]


def test_one_value_has_no_std_and_nan_is_not_hidden():
    rows = [run(1, 0.1, 0, 0.9), run(2, 0.1, 1, math.nan), run(3, 0.2, 0, 0.5)]
    g1, g2 = group_rows(rows, ["params.lr"])
    assert math.isnan(g1["mean(metrics.acc)"]) and math.isnan(g1["std(metrics.acc)"])
    assert g1["count(metrics.acc)"] == 2
    assert g2["mean(metrics.acc)"] == 0.5 and g2["std(metrics.acc)"] is None


def test_group_by_several_params_and_unhashable_values():
    rows = [
        {"id": "a", "params.layers": [1, 2], "params.opt": "adam", "metrics.m": 1.0},
        {"id": "b", "params.layers": [1, 2], "params.opt": "adam", "metrics.m": 3.0},
        {"id": "c", "params.layers": [4], "params.opt": "adam", "metrics.m": 5.0},
    ]
    groups = group_rows(rows, ["layers", "opt"])
    assert [(g["params.layers"], g["runs"]) for g in groups] == [([1, 2], 2), ([4], 1)]
    assert groups[0]["mean(metrics.m)"] == 2.0


def test_group_by_an_unknown_bare_name_is_a_usage_error():
    with pytest.raises(UsageError, match="no column or param 'nope'"):
        group_rows(ROWS, ["nope"])
    assert group_rows([], ["lr"]) == []


def test_baseline_adds_deltas_and_grouped_rows_compare_their_means():
    base = ROWS[3]  # acc 0.80
    rows = with_baseline(ROWS, base)
    assert rows[0]["delta(metrics.acc)"] == pytest.approx(0.10)
    assert rows[3]["delta(metrics.acc)"] == 0.0
    assert rows[5]["delta(metrics.acc)"] is None  # no value to compare
    assert baseline_columns(["id", "metrics.acc"], rows) == [
        "id",
        "metrics.acc",
        "delta(metrics.acc)",
    ]
    grouped = with_baseline(group_rows(ROWS, ["lr"]), base)
    assert grouped[1]["delta(mean(metrics.acc))"] == pytest.approx(0.12)
    assert ROWS[0].get("delta(metrics.acc)") is None  # inputs are not modified


def test_sort_rows_puts_missing_last_either_way_and_resolves_names():
    by_acc = sort_rows(ROWS, "-acc")
    assert [r["id"] for r in by_acc] == ["r3", "r2", "r1", "r4", "r5", "r6"]
    assert [r["id"] for r in sort_rows(ROWS, "acc")][-1] == "r6"
    groups = group_rows(ROWS, ["lr"])
    assert [g["params.lr"] for g in sort_rows(groups, "-acc")] == [0.1, 0.01, None]
    assert resolve_column("acc", group_columns(groups, ["lr"])) == "mean(metrics.acc)"
    with pytest.raises(UsageError, match="no column 'zzz'"):
        sort_rows(ROWS, "zzz")
