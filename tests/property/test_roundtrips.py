"""Hypothesis round trips: ref names, canonical JSON, metric segments."""

from __future__ import annotations

import json
import math
import string

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitexp import records as fmt
from gitexp.errors import InvalidName
from gitexp.metrics import MetricBuffer, from_parquet, summarize, to_parquet
from gitexp.records import ExpRef

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

component = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20
).filter(
    lambda c: (
        not c.startswith((".", "-"))
        and not c.endswith((".", ".lock"))
        and ".." not in c
        and not fmt.is_run_id(c)
    )
)
experiment = (
    st.lists(component, min_size=1, max_size=4)
    .map("/".join)
    .filter(lambda n: len(n) <= fmt.MAX_NAME_LEN)
)
run_id = st.builds(
    lambda y, m, d, h, mi, s, r: f"{y:04d}{m:02d}{d:02d}-{h:02d}{mi:02d}{s:02d}-{r:06x}",
    st.integers(2000, 2999),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 0xFFFFFF),
)


@FAST
@given(experiment, run_id)
def test_valid_refs_round_trip(exp, rid):
    ref = ExpRef(exp, rid)
    assert ExpRef.from_ref(str(ref)) == ref
    assert str(ref).startswith("refs/experiments/") and str(ref).endswith("/" + rid)


@FAST
@given(st.text(max_size=60))
def test_any_text_is_either_refused_or_a_safe_ref_path(name):
    try:
        fmt.validate_experiment(name)
    except InvalidName:
        return
    # what is accepted obeys git's ref rules and parses back to itself
    assert name and not any(ord(c) < 32 or ord(c) == 127 for c in name)
    assert not set(name) & set(" ~^:?*[\\") and ".." not in name and "@{" not in name
    for part in name.split("/"):
        assert part and not part.startswith((".", "-")) and not part.endswith((".", ".lock"))
    rid = "20260101-000000-abcdef"
    assert ExpRef.from_ref(f"refs/experiments/{name}/{rid}") == ExpRef(name, rid)


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def _decode(value):
    """What a reader gets back for what to_jsonable stored (NaN/inf come back as text)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


@FAST
@given(json_values)
def test_canonical_json_round_trips_and_is_stable(value):
    stored = fmt.to_jsonable(value)
    data = fmt.canonical_json(stored)
    back = json.loads(data)
    assert back == _decode(value)
    assert fmt.canonical_json(back) == data  # a fixed point: equal data, equal blob
    if isinstance(stored, dict):
        reordered = dict(reversed(list(stored.items())))
        assert fmt.canonical_json(reordered) == data


points = st.lists(
    st.tuples(
        st.sampled_from(["loss", "acc", "lr", "val/loss", "ü"]),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        st.none() | st.integers(0, 2**40),
    ),
    max_size=60,
)


@FAST
@given(points, st.lists(st.floats(width=64), max_size=10))
def test_metric_segments_round_trip_exactly(pts, array):
    buf = MetricBuffer()
    for key, value, step in pts:
        buf.append(key, value, step)
    if array:
        buf.append_array("arr", np.array(array))
    drained = buf.drain()
    if drained is None:
        assert not pts and not array
        return
    table = drained[0]
    back = from_parquet(to_parquet(table))
    assert back.schema == table.schema
    assert back.column("key").to_pylist() == [k for k, _, _ in pts] + ["arr"] * len(array)
    assert back.column("step").to_pylist() == table.column("step").to_pylist()
    assert np.array_equal(
        back.column("value").to_numpy(),
        np.array([v for _, v, _ in pts] + list(array), dtype=np.float64),
        equal_nan=True,
    )
    summary = summarize(back)
    for key in {k for k, _, _ in pts}:
        values = [v for k, v, _ in pts if k == key]
        s = summary.metrics[key]
        assert s.count == len(values)
        last = values[-1]
        assert (math.isnan(s.last) and math.isnan(last)) or s.last == last
        finite = [v for v in values if not math.isnan(v)]
        if finite:
            assert s.min == min(finite) and s.max == max(finite)
        else:
            assert math.isnan(s.min) and math.isnan(s.max)
    # the summary survives summary.json
    again = fmt.Summary.from_json(json.loads(fmt.canonical_json(summary.to_json())))
    assert again.metrics.keys() == summary.metrics.keys()
