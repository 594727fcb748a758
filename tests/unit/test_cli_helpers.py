"""Pure helpers behind the CLI: -p parsing, config loading, leaderboard, rendering."""

from __future__ import annotations

import json
import math

import pytest

from gitexp.cli.render import (
    format_csv,
    format_duration,
    format_json,
    format_number,
    human_size,
    sparkline,
)
from gitexp.errors import ConfigError, UsageError
from gitexp.leaderboard import resolve_column
from gitexp.runner import load_config, parse_assignments, parse_value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.01", 0.01),
        ("3", 3),
        ("true", True),
        ("False", False),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("adam", "adam"),
        ("", ""),
        ("1e-3", 1e-3),
        ("a=b", "a=b"),
    ],
)
def test_param_values_parse_as_json_when_they_can(text, value):
    assert parse_value(text) == value


def test_assignments_nest_and_later_wins():
    assert parse_assignments(["opt.lr=0.1", "opt.name=sgd", "x=1", "x=2", "eq=a=b"]) == {
        "opt": {"lr": 0.1, "name": "sgd"},
        "x": 2,
        "eq": "a=b",
    }
    for bad in (["novalue"], ["=1"], [" =1"]):
        with pytest.raises(UsageError):
            parse_assignments(bad)


def test_load_config_types_and_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("when: 2026-11-22\nlr: .5\n")
    assert load_config(str(tmp_path / "c.yaml")) == {"when": "2026-11-22", "lr": 0.5}
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(str(tmp_path / "empty.yaml")) == {}
    (tmp_path / "nan.json").write_text('{"x": NaN}')
    assert load_config(str(tmp_path / "nan.json")) == {"x": "NaN"}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "bad.json"))
    assert "bad.json" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError):
        load_config(str(tmp_path / "missing.toml"))


def test_column_names_resolve():
    assert resolve_column("acc", ["metrics.acc", "params.acc"]) == "metrics.acc"
    assert resolve_column("lr", ["params.lr"]) == "params.lr"
    assert resolve_column("status", []) == "status"
    with pytest.raises(UsageError):
        resolve_column("nope", ["metrics.acc"])


def test_rendering():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, math.nan, 1.0]) == "▄ ▄"
    assert sparkline([]) == ""
    assert format_duration(3.21) == "3.2s" and format_duration(245) == "4m05s"
    assert format_duration(7260) == "2h01m"
    assert human_size(999) == "999 B" and human_size(2048) == "2.0 KiB"
    assert format_number(math.inf) == "inf" and format_number(0.123456789) == "0.123457"
    assert format_number(True) == "true" and format_number(None) == ""
    assert format_json({"x": math.nan, "y": [-math.inf]}) == (
        '{\n  "x": "NaN",\n  "y": [\n    "-Infinity"\n  ]\n}'
    )
    assert format_csv(["a", "b"], [{"a": 1.5, "b": [1, 2]}, {"a": None}]) == (
        'a,b\n1.5,"[1, 2]"\n,\n'
    )


@pytest.mark.parametrize(
    "items",
    [[], [{"a": 1}], [{"a": [1, 2], "b": {"c": float("nan")}}, {"x": "two\nlines"}], [1, "s"]],
)
def test_json_streamed_in_pieces_is_the_same_text(items):
    """``git exp log --json`` streams its array; the text is what format_json gives."""
    from gitexp.cli.render import iter_json_array

    assert "".join(iter_json_array(items)) == format_json(items)
    json.loads("".join(iter_json_array(items)))
