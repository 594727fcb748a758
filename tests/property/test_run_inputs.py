"""Hypothesis over what a training script hands a real run: params, metric values and
keys, run names and tags. Each input is either refused with a GitExpError that names
it, leaving the run as it was, or stored exactly as documented and read back so."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import PurePosixPath

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gitexp
from conftest import git
from gitexp.errors import GitExpError, InvalidName, InvalidValue
from gitexp.store import ExpStore

REAL = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# text as it reaches a script: any code point, lone surrogates too (a file name or an
# argument that was not UTF-8, decoded with surrogateescape)
any_text = st.text(
    st.characters()
    | st.characters(categories=["Cc"])
    | st.sampled_from(["\udcff", "\ud800", *" ~^:?*[\\.-/@{,\u202e"]),
    max_size=12,
)


class Opaque:
    """An object with no JSON form."""


param_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.bool_, st.booleans()),
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=3)),
    st.dates(),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.builds(PurePosixPath, any_text),
    st.just(Opaque()),
)
param_values = st.recursive(
    param_leaf,
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.tuples(kids, kids)
        | st.dictionaries(any_text.filter(bool), kids, max_size=3)
    ),
    max_leaves=10,
)
params_st = st.dictionaries(
    any_text.filter(lambda k: k and "." not in k),
    param_values,
    max_size=4,
)


class Refused(Exception):
    pass


def _expected(value):
    """What params.json must hold for ``value``, by the documented rules."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused from None
        return value
    if isinstance(value, np.floating) and value.itemsize < 8:
        # float16/float32: the shortest decimal that reads back as the same value
        # (np.float32(0.1) -> 0.1), docs/format.md "params.json"
        return _expected(float(str(value)))
    if isinstance(value, np.generic):
        return _expected(value.item())
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and value.dtype.itemsize < 8:
            return [_expected(v) for v in value]
        return _expected(value.tolist())
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {_expected(k): _expected(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_expected(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, PurePosixPath):
        return _expected(str(value))
    raise Refused


def _refs(repo):
    return git("for-each-ref", "refs/experiments/", cwd=repo)


@pytest.mark.slow
@REAL
@given(params=params_st)
def test_params_are_stored_as_documented_or_refused_naming_the_key(repo, params):
    try:
        want = _expected(params)
    except Refused:
        want = None
    before = _refs(repo)
    try:
        run = gitexp.start_run(experiment="p", repo=repo, params=params)
    except (InvalidValue, InvalidName) as exc:
        assert want is None, f"refused {params!r}: {exc}"
        assert str(exc) and "\n" not in str(exc)
        assert _refs(repo) == before  # nothing written
        return
    run.finish()
    assert want is not None, f"accepted {params!r}"
    stored = json.loads(git("show", f"{run.ref}:params.json", cwd=repo))
    assert stored == want
    with ExpStore(repo) as store:
        assert store.read_settled(run.id).params == want


metric_keys = st.one_of(
    st.sampled_from(["loss", "val/acc", "ü", "k" * 250]),
    any_text,
    st.text(min_size=251, max_size=260),
)
metric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**60), 2**60),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int32, st.integers(-(2**31), 2**31 - 1)),
    st.none(),
    any_text,
    st.just(Opaque()),
)
steps = st.none() | st.integers(-3, 2**62) | st.just(np.int64(7)) | st.just(1.5)


@REAL
@given(calls=st.lists(st.tuples(metric_keys, metric_values, steps), min_size=1, max_size=12))
def test_metric_points_are_kept_exactly_or_refused_without_harm(repo, calls):
    run = gitexp.start_run(experiment="m", repo=repo)
    accepted = []
    next_step: dict[str, int] = {}
    for key, value, step in calls:
        try:
            run.log_metric(key, value, step=step)
        except InvalidValue as exc:
            assert "\n" not in str(exc)
            continue
        s = next_step.get(key, 0) if step is None else int(step)
        next_step[key] = max(next_step.get(key, 0), s + 1)
        accepted.append((key, s, float(value)))
    run.finish()
    with ExpStore(repo) as store:
        rec = store.read_settled(run.id)
        table = store.read_metrics(rec)
    got = list(
        zip(
            table.column("key").to_pylist(),
            table.column("step").to_pylist(),
            table.column("value").to_pylist(),
        )
    )
    assert len(got) == len(accepted)
    for (k1, s1, v1), (k2, s2, v2) in zip(got, accepted):
        assert (k1, s1) == (k2, s2)
        assert (math.isnan(v1) and math.isnan(v2)) or v1 == v2
    assert rec.status == "finished" and set(rec.summary.metrics) == {k for k, _, _ in accepted}


@REAL
@given(name=any_text, tags=st.lists(any_text, max_size=3))
def test_run_names_and_tags_round_trip_or_are_refused(repo, gx, name, tags):
    before = _refs(repo)
    try:
        run = gitexp.start_run(experiment="n", name=name, tags=tags, repo=repo)
    except GitExpError as exc:
        assert "\n" not in str(exc)
        assert _refs(repo) == before
        return
    run.finish()
    with ExpStore(repo) as store:
        rec = store.read_settled(run.id)
    assert rec.name == name and rec.tags == sorted(set(tags))
    row = next(r for r in json.loads(gx.ok("log", "--json", "-e", "n")) if r["id"] == run.id)
    assert row["name"] == name
    assert json.loads(gx.ok("show", "--json", run.id))["info"]["tags"] == sorted(set(tags))
