"""format: names, refs, canonical JSON, param values, artifact paths, summaries."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

from gitexp import records as fmt
from gitexp.errors import FormatError, InvalidName, InvalidValue, UnsupportedFormat, UsageError
from gitexp.records import ArtifactEntry, ExpRef, MetricSummary, Summary

RUN_ID = "20261122-143022-7f3a9c"


# ------------------------------------------------------------ experiment names


@pytest.mark.parametrize(
    "name",
    [
        "default",
        "mnist",
        "fraud/xgb-vs-mlp",
        "a/b/c/d",
        "lr_0.01",
        "v1.2",
        "Ünïcode",
        "x" * 200,
        "a@b",
        "team/2026-11/sweep_3",
    ],
)
def test_valid_experiment_names_are_accepted_unchanged(name):
    assert fmt.validate_experiment(name) == name
    assert ExpRef(name, RUN_ID).experiment == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("with space", "characters"),
        ("a..b", ".."),
        ("a~b", "characters"),
        ("a^b", "characters"),
        ("a:b", "characters"),
        ("a?b", "characters"),
        ("a*b", "characters"),
        ("a[b", "characters"),
        ("a\\b", "characters"),
        ("-leading", "start"),
        ("ok/-dash", "start"),
        (".hidden", "start"),
        ("ok/.hidden", "start"),
        ("name.lock", ".lock"),
        ("name.lock/sub", ".lock"),
        ("trailing.", "end"),
        ("tab\there", "control"),
        ("nl\nhere", "control"),
        ("nul\x00here", "control"),
        ("del\x7fhere", "control"),
        ("x" * 201, "longer"),
        ("a//b", "empty path component"),
        ("/lead", "empty path component"),
        ("trail/", "empty path component"),
        ("@", "@"),
        ("a@{b", "@{"),
        ("cafe\u0301", "NFC"),  # 'e' + combining accent: not NFC
        (f"exp/{RUN_ID}", "run id"),  # would be a directory where a run's ref is a file
        (f"exp/{RUN_ID}/sub", "run id"),
    ],
)
def test_invalid_experiment_names_are_refused_with_a_reason(name, why):
    with pytest.raises(InvalidName) as info:
        fmt.validate_experiment(name)
    assert why in str(info.value)
    assert info.value.exit_code == 2
    assert isinstance(info.value, UsageError)
    assert "\n" not in str(info.value).replace(repr(name), "")


def test_nfc_name_is_accepted_where_its_decomposed_twin_is_refused():
    import unicodedata

    assert fmt.validate_experiment(unicodedata.normalize("NFC", "cafe\u0301")) == "caf\u00e9"


def test_invalid_names_agree_with_git_check_ref_format():
    """Everything we accept is a valid ref path for git itself."""
    import subprocess

    for name in ["fraud/xgb-vs-mlp", "a@b", "v1.2", "Ünïcode"]:
        fmt.validate_experiment(name)
        proc = subprocess.run(["git", "check-ref-format", f"refs/experiments/{name}/{RUN_ID}"])
        assert proc.returncode == 0, name


# ------------------------------------------------------------------- refs


def test_expref_round_trip_and_short_form():
    ref = ExpRef("fraud/xgb", RUN_ID)
    assert str(ref) == f"refs/experiments/fraud/xgb/{RUN_ID}"
    assert ref.short == f"fraud/xgb/{RUN_ID}"
    assert ExpRef.from_ref(str(ref)) == ref


@pytest.mark.parametrize(
    "ref",
    [
        f"refs/heads/{RUN_ID}",
        f"refs/experiments/{RUN_ID}",  # no experiment
        "refs/experiments/exp/not-a-run-id",
        f"refs/experiments/bad name/{RUN_ID}",
        f"refs/experiments/../{RUN_ID}",
    ],
)
def test_expref_from_ref_refuses_what_is_not_a_run_ref(ref):
    with pytest.raises(InvalidName):
        ExpRef.from_ref(ref)


def test_run_ids_are_sortable_by_time_and_unique_even_with_a_seeded_rng():
    import random

    t0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    t1 = t0 + dt.timedelta(seconds=1)
    assert fmt.new_run_id(t0) < fmt.new_run_id(t1)
    ids = set()
    for _ in range(200):
        random.seed(0)
        ids.add(fmt.new_run_id(t0))
    assert len(ids) == 200
    assert all(fmt.is_run_id(i) for i in ids)


# ------------------------------------------------------------ canonical JSON


def test_canonical_json_is_sorted_indented_and_stable():
    a = {"b": 1, "a": {"z": [1, 2], "y": "é"}}
    b = {"a": {"y": "é", "z": [1, 2]}, "b": 1}
    out = fmt.canonical_json(a)
    assert out == fmt.canonical_json(b)
    assert out.endswith(b"\n")
    text = out.decode("utf-8")
    assert text.index('"a"') < text.index('"b"')
    assert text.index('"y"') < text.index('"z"')
    assert "é" in text  # UTF-8, not \\u escapes
    assert json.loads(text) == a


def test_canonical_json_refuses_raw_nan_but_to_jsonable_encodes_it():
    with pytest.raises(ValueError):
        fmt.canonical_json({"x": math.nan})
    data = fmt.to_jsonable({"n": math.nan, "p": math.inf, "m": -math.inf, "f": 1.5})
    assert data == {"n": "NaN", "p": "Infinity", "m": "-Infinity", "f": 1.5}
    assert json.loads(fmt.canonical_json(data)) == data
    for text, want in (("NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf)):
        got = fmt.decode_float(text)
        assert (math.isnan(got) and math.isnan(want)) or got == want


class Color(enum.Enum):
    RED = "red"


def test_to_jsonable_converts_what_has_a_natural_json_form():
    value = {
        "i": np.int64(3),
        "f32": np.float32(0.5),
        "f64": np.float64(0.25),
        "nanf": np.float64("nan"),
        "b": np.bool_(True),
        "arr": np.arange(3),
        "mat": np.array([[1.0, 2.0], [3.0, 4.0]]),
        "date": dt.date(2026, 11, 22),
        "when": dt.datetime(2026, 11, 22, 14, 30, tzinfo=dt.timezone.utc),
        "delta": dt.timedelta(minutes=2),
        "path": Path("data") / "x.csv",
        "posix": PurePosixPath("a/b"),
        "enum": Color.RED,
        "tuple": (1, "a"),
        "set": {3, 1, 2},
        "nested": {"deep": {"x": np.int32(7)}},
        1: "int key",
    }
    out = fmt.to_jsonable(value)
    assert out == {
        "i": 3,
        "f32": 0.5,
        "f64": 0.25,
        "nanf": "NaN",
        "b": True,
        "arr": [0, 1, 2],
        "mat": [[1.0, 2.0], [3.0, 4.0]],
        "date": "2026-11-22",
        "when": "2026-11-22T14:30:00+00:00",
        "delta": 120.0,
        "path": "data/x.csv",
        "posix": "a/b",
        "enum": "red",
        "tuple": [1, "a"],
        "set": [1, 2, 3],
        "nested": {"deep": {"x": 7}},
        "1": "int key",
    }
    assert type(out["i"]) is int and type(out["b"]) is bool
    # and the result is storable as canonical JSON
    assert json.loads(fmt.canonical_json(out)) == json.loads(json.dumps(out))


def test_float32_params_keep_the_decimal_they_were_written_as():
    """np.float32(0.1) is stored as 0.1 (what numpy prints, and what `-p lr=0.1` gives),
    not 0.10000000149011612: otherwise the same config diffs and fingerprints apart."""
    out = fmt.to_jsonable(
        {
            "lr": np.float32(0.1),
            "half": np.float16(0.1),
            "arr": np.array([[0.1, 0.2]], dtype=np.float32),
            "zero_d": np.array(0.3, dtype=np.float32),
            "nan": np.float32("nan"),
            "big": np.float32(3e38),
        }
    )
    assert out == {
        "lr": 0.1,
        "half": 0.1,
        "arr": [[0.1, 0.2]],
        "zero_d": 0.3,
        "nan": "NaN",
        "big": 3e38,
    }
    assert fmt.to_jsonable(np.float64(0.1)) == 0.1 and fmt.to_jsonable(np.float32(0.5)) == 0.5


def test_to_jsonable_refuses_an_object_naming_its_key():
    with pytest.raises(InvalidValue) as info:
        fmt.to_jsonable({"model": {"layer": object()}})
    assert info.value.key == "model.layer"
    assert "'model.layer'" in str(info.value)
    assert "object" in str(info.value)
    with pytest.raises(InvalidValue) as info:
        fmt.to_jsonable({"xs": [1, object()]})
    assert info.value.key == "xs[1]"
    with pytest.raises(InvalidValue):
        fmt.to_jsonable({(1, 2): "tuple key"})


def test_flatten_and_set_dotted_are_inverse():
    nested = {"opt": {"lr": 0.1, "name": "adam"}, "seed": 1, "empty": {}}
    flat = fmt.flatten(nested)
    assert flat == {"opt.lr": 0.1, "opt.name": "adam", "seed": 1, "empty": {}}
    rebuilt: dict = {}
    for k, v in flat.items():
        fmt.set_dotted(rebuilt, k, v)
    assert rebuilt == nested


def test_deep_merge_merges_nested_and_replaces_values():
    assert fmt.deep_merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "b": {"c": 1}}) == {
        "a": {"x": 1, "y": 3},
        "b": {"c": 1},
    }


def test_iso_round_trip_is_utc_with_z():
    t = dt.datetime(2026, 11, 22, 15, 30, 22, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    text = fmt.iso(t)
    assert text == "2026-11-22T14:30:22.123456Z"
    assert fmt.parse_iso(text) == t


# ------------------------------------------------------------ artifact paths


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("model.npz", "model.npz"),
        ("out/model.npz", "out/model.npz"),
        ("./out//model.npz", "out/model.npz"),
        ("out\\model.npz", "out/model.npz"),
        ("a/./b/", "a/b"),
    ],
)
def test_artifact_paths_are_normalised(path, want):
    assert fmt.normalize_artifact_path(path) == want


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "\\abs",
        "C:/x",
        "c:\\x",
        "..",
        "../x",
        "a/../../x",
        "a/../b",
        "",
        ".",
        "./",
        "a\nb",
    ],
)
def test_artifact_paths_that_escape_or_name_nothing_are_refused(path):
    with pytest.raises(InvalidName):
        fmt.normalize_artifact_path(path)


def test_manifest_from_outside_is_validated():
    good = {"path": "m.bin", "blake3": "a" * 64, "size": 3, "mode": "100644", "role": "output"}
    assert ArtifactEntry.from_json(good).to_json() == good
    for bad in (
        {**good, "path": "../../etc/passwd"},
        {**good, "path": "/etc/passwd"},
        {**good, "blake3": "zz"},
        {**good, "size": -1},
        {**good, "role": "evil"},
        {**good, "kind": "symlink"},
        {"path": "m.bin"},
        "not an object",
    ):
        with pytest.raises((FormatError, InvalidName)):
            ArtifactEntry.from_json(bad)
    entries = fmt.manifest_from_json([good, {**good, "path": "a.bin", "role": "log"}])
    assert [e["path"] for e in fmt.manifest_to_json(entries)] == ["a.bin", "m.bin"]


# ----------------------------------------------------------------- summaries


def _s(last, step, t, lo, hi, n):
    return MetricSummary(last=last, last_step=step, last_time=t, min=lo, max=hi, count=n)


def test_metric_summary_merge_takes_the_later_last_and_ignores_nan_bounds():
    early = _s(1.0, 4, 100.0, 0.5, 2.0, 5)
    late = _s(0.3, 9, 200.0, math.nan, math.nan, 1)
    for merged in (early.merge(late), late.merge(early)):
        assert merged.last == 0.3 and merged.last_step == 9
        assert merged.min == 0.5 and merged.max == 2.0
        assert merged.count == 6


def test_summary_merge_and_json_round_trip_keep_nan_and_finals():
    a = Summary({"loss": _s(1.0, 1, 1.0, 1.0, 2.0, 2)}, {"acc": 0.5})
    b = Summary(
        {"loss": _s(math.nan, 2, 2.0, 0.1, 0.1, 2), "acc": _s(1, 0, 1, 1, 1, 1)}, {"acc": 0.9}
    )
    m = a.merge(b)
    assert math.isnan(m.metrics["loss"].last)
    assert m.metrics["loss"].min == 0.1 and m.metrics["loss"].max == 2.0
    assert m.final == {"acc": 0.9}
    assert m.final_values()["acc"] == 0.9
    data = json.loads(fmt.canonical_json(m.to_json()))
    assert data["metrics"]["loss"]["last"] == "NaN"
    back = Summary.from_json(data)
    assert math.isnan(back.metrics["loss"].last)
    assert back.metrics["loss"].count == 4
    assert back.final == {"acc": 0.9}
    # merging does not change its inputs
    assert a.final == {"acc": 0.5} and a.metrics["loss"].count == 2


def test_summary_from_json_refuses_garbage():
    with pytest.raises(FormatError):
        Summary.from_json([])
    with pytest.raises(FormatError):
        Summary.from_json({"metrics": {"x": {"last": 1}}})


def test_check_version_refuses_other_format_versions():
    fmt.check_version({"format": 1}, "run")
    with pytest.raises(UnsupportedFormat) as info:
        fmt.check_version({"format": 2}, "run x")
    assert "version 2" in str(info.value) and info.value.exit_code == 6


def test_run_names_and_tags_are_checked():
    assert fmt.validate_run_name("any text, even spaces / slashes") is not None
    assert fmt.validate_run_name(None) is None
    for bad in ("a\nb", "x" * 201):
        with pytest.raises(InvalidName):
            fmt.validate_run_name(bad)
    assert fmt.validate_tag("baseline") == "baseline"
    for bad in ("", "  ", "a,b", "a\tb"):
        with pytest.raises(InvalidName):
            fmt.validate_tag(bad)


# ------------------------------------------------------ bounded JSON reading


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 100 levels"),
        (b'{"a": ' * 101 + b"1" + b"}" * 101, "nests deeper than 100 levels"),
        (b'{"n": ' + b"7" * 100_000 + b"}", "does not parse as JSON: Exceeds the limit"),
        (b'{"size": Infinity}', "Infinity is not JSON"),
        (b'{"x": NaN}', "NaN is not JSON"),
        (b'{"x": -Infinity}', "-Infinity is not JSON"),
    ],
)
def test_a_hostile_document_is_one_format_error(doc, message):
    with pytest.raises(FormatError, match=re.escape(message)) as info:
        fmt.parse_json(doc, "run x: params.json")
    assert str(info.value).startswith("run x: params.json ")
    assert "\n" not in str(info.value)


def test_the_depth_readers_accept_is_the_depth_writers_write():
    deep: Any = 1
    for _ in range(fmt.MAX_DEPTH):
        deep = [deep]
    assert fmt.parse_json(fmt.canonical_json(deep), "x") == deep
    with pytest.raises(InvalidValue, match="nests deeper than 100 levels"):
        fmt.canonical_json([deep])


def test_an_oversized_document_is_refused_before_it_is_parsed(monkeypatch):
    from gitexp.records import jsonform

    monkeypatch.setattr(jsonform, "MAX_DOC_BYTES", 1000)
    with pytest.raises(FormatError, match="is 1002 bytes, more than 1000 allowed"):
        fmt.parse_json(b'"' + b"a" * 1000 + b'"', "run x: run.json")
