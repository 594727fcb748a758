"""MLflow's names and filter strings, mapped onto git-exp's (gitexp.interop)."""

from __future__ import annotations

import pytest

from gitexp.errors import UnsupportedCall
from gitexp.interop import mlflow_names as names
from gitexp.interop.mlflow_filter import FilterError, to_sort, to_where
from gitexp.where import filter_rows

ROWS = [
    {
        "id": "20261122-143022-aaaaaa",
        "experiment": "default",
        "name": "bert-base",
        "status": "finished",
        "start": "2026-11-22T14:30:22.500000Z",
        "tags": ["team=nlp", "baseline"],
        "params.lr": 0.01,
        "params.opt": "adam",
        "metrics.acc": 0.91,
        "metrics.val loss": 0.3,
    },
    {
        "id": "20261122-150000-bbbbbb",
        "experiment": "sweep",
        "name": "resnet",
        "status": "crashed",
        "start": "2026-11-22T15:00:00.000001Z",
        "tags": ["team=cv"],
        "params.lr": "0.01",
        "params.opt": "sgd",
        "metrics.acc": 0.5,
    },
    {
        "id": "20261122-160000-cccccc",
        "experiment": "sweep",
        "name": "bert-large",
        "status": "pruned",
        "start": "2026-11-22T16:00:00.000001Z",
        "tags": [],
        "metrics.acc": 0.7,
    },
]


def matching(filter_string: str) -> list[str]:
    return [r["name"] for r in filter_rows(ROWS, to_where(filter_string))]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("metrics.acc > 0.6", ["bert-base", "bert-large"]),
        ("metrics.acc >= 0.5 AND params.opt = 'sgd'", ["resnet"]),
        # MLflow keeps params as text: '0.01' means the text and the number alike
        ("params.lr = '0.01'", ["bert-base", "resnet"]),
        ("params.lr != '0.01'", []),  # a run without lr matches no comparison
        ("params.opt != 'adam'", ["resnet"]),
        ("params.opt IN ('adam', 'rmsprop')", ["bert-base"]),
        ("params.opt NOT IN ('adam')", ["resnet"]),
        ("tags.team = 'nlp'", ["bert-base"]),
        ("tags.mlflow.runName = 'resnet'", ["resnet"]),
        ("attributes.run_name LIKE 'bert-%'", ["bert-base", "bert-large"]),
        ("run_name ILIKE 'BERT-L%'", ["bert-large"]),
        ("run_name LIKE 'bert_base'", ["bert-base"]),  # _ is one character
        ("attributes.status = 'FAILED'", ["resnet"]),  # crashed shows as FAILED
        ("status = 'FINISHED'", ["bert-base", "bert-large"]),  # pruned too
        ("status != 'FINISHED'", ["resnet"]),
        ("attributes.run_id = '20261122-150000-bbbbbb'", ["resnet"]),
        ("experiment_id IN ('sweep')", ["resnet", "bert-large"]),
        ("metrics.`val loss` < 1", ["bert-base"]),
        ('metrics."val loss" < 1', ["bert-base"]),
        ("params.lr IS NULL", ["bert-large"]),
        ("attributes.start_time > 1795359600000", ["resnet", "bert-large"]),  # 15:00:00Z
        (
            "metrics.acc > 0.6 and (run_name LIKE '%large' or params.opt = 'adam')",
            ["bert-base", "bert-large"],
        ),
        ("", ["bert-base", "resnet", "bert-large"]),
    ],
)
def test_an_mlflow_filter_selects_what_mlflow_would(filter_string, expected):
    assert matching(filter_string) == expected


@pytest.mark.parametrize(
    ("filter_string", "error", "message"),
    [
        ("attributes.end_time > 0", UnsupportedCall, "end_time"),
        ("datasets.name = 'x'", UnsupportedCall, "datasets.name"),
        ("tags.mlflow.user = 'ana'", UnsupportedCall, "tags.mlflow.user"),
        ("metrics.acc >", FilterError, "expected a number or a quoted value"),
        ("metrics.acc = 1 junk", FilterError, "unexpected 'junk'"),
        ("colour = 'red'", FilterError, "unknown attribute 'colour'"),
    ],
)
def test_a_filter_git_exp_cannot_translate_is_an_error_naming_why(filter_string, error, message):
    with pytest.raises(error, match=message):
        to_where(filter_string)


def test_order_by_is_one_leaderboard_sort():
    assert to_sort(["metrics.acc DESC"]) == "-metrics.acc"
    assert to_sort(["params.`opt lr` asc"]) == "params.opt lr"
    assert to_sort(["attributes.start_time"]) == "start"
    assert to_sort(None) is None
    with pytest.raises(UnsupportedCall, match="more than one key"):
        to_sort(["metrics.acc", "params.lr"])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.01", 0.01),
        ("3", 3),
        ("True", True),
        ("None", None),
        ("1e-05", 1e-05),
        ("007", "007"),  # its number's text is "7": kept as text
        ("1e-5", "1e-5"),
        ("nan", "nan"),
        ("adam", "adam"),
        ("[1, 2]", "[1, 2]"),
    ],
)
def test_a_param_text_becomes_a_value_only_when_nothing_is_lost(text, value):
    got = names.param_value(text)
    assert got == value and type(got) is type(value)
    assert names.param_text(got) == text


def test_tags_map_both_ways():
    assert names.tag_text("team", "nlp") == "team=nlp"
    assert names.tag_text("baseline", "") == "baseline"
    assert names.tag_pairs(["team=nlp", "baseline", "url=a=b"]) == {
        "team": "nlp",
        "baseline": "",
        "url": "a=b",
    }
    assert names.parse_run_uri("runs:/20261122-143022-aaaaaa/model/x") == (
        "20261122-143022-aaaaaa",
        "model/x",
    )
    assert names.parse_run_uri("models:/m/1") is None
    assert names.experiment_of("0") == names.experiment_of("Default") == "default"
