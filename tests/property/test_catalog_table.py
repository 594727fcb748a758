"""The columnar catalog answers exactly as the row-by-row reference does.

``git exp log`` sorts, filters and picks columns on Arrow columns (typed
``params.*``/``metrics.*`` columns where a key has one type, the JSON text
otherwise). Each test builds a catalog table from generated runs and checks it
against the plain-Python implementation on dict rows (reference sort and
``differing_params`` below, ``where.compile_where``), for values of every
kind: ints, floats with NaN and infinities, bools, text, null, lists, missing
keys; with the typed-column budget at its default and at 0 or 1 (JSON only).
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gitexp import catalog
from gitexp.leaderboard import page, resolve_column, sort_key, sort_table, where_table
from gitexp.where import compile_where

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

value = st.one_of(
    st.integers(-3, 3),
    st.integers(2**63, 2**64),  # too big for int64: JSON only
    st.floats(allow_nan=True, allow_infinity=True, width=16),
    st.booleans(),
    st.sampled_from(["x", "xy", "b", ""]),
    st.none(),
    st.lists(st.integers(0, 2), max_size=2),
)
params = st.dictionaries(st.sampled_from(["a", "b", "c"]), value, max_size=3)
metrics = st.dictionaries(
    st.sampled_from(["m", "n"]), st.floats(allow_nan=True, allow_infinity=True), max_size=2
)
run = st.tuples(
    params,
    metrics,
    st.sampled_from(["finished", "failed", "running"]),
    st.sampled_from([None, "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"]),
    st.lists(st.sampled_from(["best", "base"]), max_size=2, unique=True),
)
runs = st.lists(run, max_size=8)

WHERE = [
    "params.a > 0",
    "params.a == 'x' or params.b <= 1",
    "params.b is null",
    "not params.a < 1",
    "metrics.m >= 0 and not (metrics.n < 0)",
    "params.a in [1, 2, 'x', true]",
    "params.c ~ 'x*'",
    "tags.best or status == 'failed'",
    "params.c is not null and params.c != params.a",
]
SORTS = ["params.a", "-params.a", "params.b", "-params.c", "metrics.m", "-metrics.n", "start"]


def _data(i: int, r: tuple) -> tuple[str, str, int, bool, dict]:
    p, m, status, start, tags = r
    run_id = f"20261101-000000-{i:06x}"
    data = {
        "id": run_id,
        "experiment": "e",
        "name": f"run {i}",
        "status": status,
        "start": start,
        "duration": 1.5 * i,
        "exit_code": 0,
        "tags": sorted(tags),
        "fingerprint": None,
        "code_commit": None,
        "params": p,
        "metrics": m,
    }
    return (f"refs/experiments/e/{run_id}", f"{i:040x}", i, False, data)


def _reference(new: list[tuple]) -> list[dict]:
    """Rows as catalog.row_of makes them, newest first (the order of the old catalog)."""
    rows = []
    for ref, sha, _, _, d in new:
        row = {k: d[k] for k in catalog.BASE_COLUMNS if k != "tags"}
        row["tags"] = list(d["tags"])
        row["ref"], row["sha"] = ref, sha
        row.update({f"params.{k}": v for k, v in d["params"].items()})
        row.update({f"metrics.{k}": v for k, v in d["metrics"].items()})
        rows.append(row)
    rows.sort(key=lambda r: (r["start"] or "", r["id"]), reverse=True)
    return rows


def differing_params(rows: list[dict]) -> list[str]:
    """Reference: param columns whose value is not the same (same type too) in every row."""
    keys = sorted({k for r in rows for k in r if k.startswith("params.")})
    first = rows[0]
    return [
        k
        for k in keys
        if any(r.get(k) != first.get(k) or type(r.get(k)) is not type(first.get(k)) for r in rows)
    ]


def _sorted_reference(rows: list[dict], sort: str) -> list[dict]:
    """Reference: rows sorted by a column, missing values and NaN last, stable."""
    col = resolve_column(sort.lstrip("-+"), {k for r in rows for k in r})
    present = [r for r in rows if sort_key(r.get(col))[0] == 0]
    missing = [r for r in rows if sort_key(r.get(col))[0] == 1]
    present.sort(key=lambda r: sort_key(r.get(col))[1:], reverse=sort.startswith("-"))
    return present + missing


def _build(new: list[tuple], split: int) -> catalog.RunTable:
    """A catalog of ``new`` made in two updates (the first ``split`` runs, then the rest)."""
    table, keys = catalog._merge(catalog._empty_table(), {}, [], [], [], [], new[:split])
    n = table.num_rows
    table, keys = catalog._merge(
        table, keys, list(range(n)), list(range(n)), [False] * n, [], new[split:]
    )
    return catalog.RunTable(catalog._default_order(table), keys)


def _build_from_chunks(new: list[tuple], cuts: list[int], budget: int) -> catalog.RunTable:
    """A catalog of ``new`` made in one update from chunks of rows built apart
    (cut at ``cuts``, each with its own typed-column budget ``budget``), as a
    pull's helper processes build them."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(new)), len(new)]
    saved = catalog.MAX_TYPED
    catalog.MAX_TYPED = budget  # a chunk of another budget: its other keys come from JSON
    try:
        parts = [new[a:b] for a, b in itertools.pairwise(bounds) if b > a]
        added = [
            (
                catalog.row_chunk([(r, s, d) for r, s, _, _, d in part]),
                [0] * len(part),
                [False] * len(part),
            )
            for part in parts
        ]
    finally:
        catalog.MAX_TYPED = saved
    table, keys = catalog._merge(catalog._empty_table(), {}, [], [], [], [], [], added)
    return catalog.RunTable(catalog._default_order(table), keys)


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True, allow_nan=True) == json.dumps(
        b, sort_keys=True, allow_nan=True
    )


def _ids(rows) -> list[str]:
    return [r.get("id") for r in rows]


NAN_AFTER_MISSING = [  # NaN and missing sort as one (missing, last), in listing order
    ({}, {"m": 1.0}, "finished", "2026-11-02T00:00:00Z", []),
    ({}, {}, "finished", "2026-11-02T00:00:00Z", []),
    ({}, {"m": math.nan}, "finished", "2026-11-01T00:00:00Z", []),
    ({}, {"m": 0.5}, "finished", None, []),
]


@pytest.mark.slow
@FAST
@given(runs, st.integers(0, 8), st.sampled_from([catalog.MAX_TYPED, 1, 0]), st.booleans())
@example(NAN_AFTER_MISSING, 0, catalog.MAX_TYPED, True)
@example(  # 0.0 and -0.0 are one value to Python (and so to the table)
    [({"a": 0.0}, {}, "finished", None, []), ({"a": -0.0}, {}, "finished", None, [])],
    0,
    catalog.MAX_TYPED,
    True,
)
def test_the_catalog_lists_sorts_and_filters_as_the_reference(generated, split, budget, arrow):
    """``arrow``: sort and compare on Arrow columns (as for 20,000 runs and more)
    or in Python (fewer runs): both answer as the reference."""
    new = [_data(i, r) for i, r in enumerate(generated)]
    saved = catalog.MAX_TYPED, catalog.ARROW_ROWS
    catalog.MAX_TYPED, catalog.ARROW_ROWS = budget, 0 if arrow else saved[1]
    try:
        table = _build(new, min(split, len(new)))
        _check_against_reference(table, new)
    finally:
        catalog.MAX_TYPED, catalog.ARROW_ROWS = saved


def _check_against_reference(table, new):
    ref = _reference(new)
    assert _same(table.rows(), ref)
    columns = table.columns()
    if ref:
        assert columns == {k for r in ref for k in r}
        assert table.differing_params() == differing_params(ref)
    for sort in SORTS:
        expected = _sorted_reference(ref, sort)
        assert _ids(sort_table(table, sort).rows()) == _ids(expected), sort
        assert _ids(page(sort_table(table, sort), 0, 2).view()) == _ids(expected[:2])
        assert _ids(page(sort_table(table, sort), 1, 2).view()) == _ids(expected[1:3])
    for text in WHERE:
        keep = compile_where(text, {k for r in ref for k in r})
        assert _ids(where_table(table, text).rows()) == _ids([r for r in ref if keep(r)]), text
    for tag in ("best", "base"):
        assert _ids(table.filter(tags=[tag]).rows()) == _ids([r for r in ref if tag in r["tags"]])
    assert _ids(table.filter(status=["failed"]).rows()) == _ids(
        [r for r in ref if r["status"] == "failed"]
    )


@pytest.mark.slow
@FAST
@given(runs, st.lists(st.integers(0, 8), max_size=3), st.sampled_from([catalog.MAX_TYPED, 1, 0]))
def test_a_catalog_of_chunks_built_apart_lists_as_the_reference(generated, cuts, budget):
    """A pull's rows come as chunks built in other processes, each deciding its
    own typed columns: merged, they answer as rows merged one by one do."""
    new = [_data(i, r) for i, r in enumerate(generated)]
    _check_against_reference(_build_from_chunks(new, cuts, budget), new)


@FAST
@given(runs, st.data())
def test_rows_taken_back_from_a_chunk_are_the_rows_given(generated, data):
    """The rows of a chunk the catalog takes only in part (a ref moved again
    meanwhile) come back as they were given, NaN and nesting included."""
    new = [_data(i, r) for i, r in enumerate(generated)]
    chunk = catalog.row_chunk([(r, s, d) for r, s, _, _, d in new])
    assert len(chunk) == len(new)
    picked = sorted(data.draw(st.sets(st.integers(0, max(0, len(new) - 1)))) & set(range(len(new))))
    back = chunk.rows(picked)
    assert [(r, s) for r, s, _ in back] == [(new[i][0], new[i][1]) for i in picked]
    assert _same([d for *_, d in back], [new[i][4] for i in picked])


@pytest.mark.slow
@FAST
@given(runs, st.data())
def test_dropping_runs_keeps_key_counts_and_types_exact(generated, data):
    """Runs leave the catalog (deleted, or replaced by a newer commit): what
    remains answers as a catalog built from the remaining runs alone."""
    new = [_data(i, r) for i, r in enumerate(generated)]
    table, keys = catalog._merge(catalog._empty_table(), {}, [], [], [], [], new)
    keep = sorted(data.draw(st.sets(st.integers(0, max(0, len(new) - 1)))) & set(range(len(new))))
    dropped = [i for i in range(len(new)) if i not in keep]
    table, keys = catalog._merge(table, keys, keep, keep, [False] * len(keep), dropped, [])
    remaining = [new[i] for i in keep]
    expected_keys: dict[str, int] = {}
    for *_, d in remaining:
        for name in [
            *(f"params.{k}" for k in d["params"]),
            *(f"metrics.{k}" for k in d["metrics"]),
        ]:
            expected_keys[name] = expected_keys.get(name, 0) + 1
    assert keys == expected_keys
    view = catalog.RunTable(catalog._default_order(table), keys)
    assert _same(view.rows(), _reference(remaining))
    for name in view.table.column_names:
        if name.startswith(("params.", "metrics.")):
            assert name in keys  # no typed column outlives its key
            values = [v for v in view.table.column(name).to_pylist() if v is not None]
            assert all(
                type(v) is type(values[0]) or (isinstance(v, float) and math.isnan(v))
                for v in values
            )
