"""Leaderboard operations on rows (``query.row_of`` dicts): group runs by params,
compare runs to a baseline, sort.

Pure functions: rows in, rows out; no I/O, no third-party import.

* :func:`group_rows` answers "is this 0.2 % real?": one row per distinct value
  of the grouping params, with ``runs`` (how many runs share it) and, per
  metric, ``mean(metrics.K)``, ``std(metrics.K)`` (sample standard deviation,
  n-1) and ``count(metrics.K)`` (the runs that have the metric).
* :func:`with_baseline` adds ``delta(C)`` columns: each row's value of metric
  column ``C`` minus the baseline run's.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gitexp.errors import UsageError

Row = Mapping[str, Any]

RUNS = "runs"
STATS = ("mean", "std", "count")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"  # every NaN in one group (NaN != NaN would split them)
    return v


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers by value, then text; missing values and NaN last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0)
    if _is_number(value):
        return (0, float(value))
    if isinstance(value, bool):
        return (0, float(value))
    return (1, json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else str(value))


def resolve(name: str, columns: Iterable[str]) -> str:
    """A column of ``columns`` that ``name`` means: exact, then ``metrics.``/``params.``
    prefixed, then wrapped in ``mean(...)`` or ``delta(...)``.

    Raises:
        UsageError: no such column.
    """
    cols = list(columns)
    for cand in (name, f"metrics.{name}", f"params.{name}"):
        if cand in cols:
            return cand
    for wrap in ("mean", "delta"):
        for cand in (name, f"metrics.{name}", f"params.{name}"):
            if f"{wrap}({cand})" in cols:
                return f"{wrap}({cand})"
    raise UsageError(f"no column {name!r} (columns: {', '.join(cols)})")


def metric_columns(rows: Iterable[Row]) -> list[str]:
    """Every ``metrics.*`` column of the rows, sorted."""
    return sorted({k for r in rows for k in r if k.startswith("metrics.")})


def group_rows(
    rows: Sequence[Row], by: Sequence[str], metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per distinct combination of the ``by`` columns' values.

    Args:
        rows: run rows.
        by: columns to group by (``params.seed``, ``seed`` and ``status`` all work:
            bare names resolve to ``params.`` or ``metrics.`` columns).
        metrics: metric columns to summarize (default: all of them).

    A group's ``mean``/``std`` are over the runs that have the metric; a NaN
    value makes both NaN (a diverged seed must not hide); ``std`` is None for
    fewer than two values. Groups come in the order of their values, runs
    without the grouping param last.
    """
    if not by:
        raise UsageError("--group-by needs at least one column")
    available = {k for r in rows for k in r}
    keys = [_resolve_group(b, available) for b in by] if rows else list(by)
    mcols = list(metrics) if metrics is not None else metric_columns(rows)
    groups: dict[tuple[Any, ...], list[Row]] = {}
    shown: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for r in rows:
        values = tuple(r.get(k) for k in keys)
        hk = tuple(_hashable(v) for v in values)
        groups.setdefault(hk, []).append(r)
        shown.setdefault(hk, values)
    out: list[dict[str, Any]] = []
    for hk in sorted(groups, key=lambda h: tuple(sort_key(v) for v in shown[h])):
        members = groups[hk]
        row: dict[str, Any] = dict(zip(keys, shown[hk]))
        row[RUNS] = len(members)
        for m in mcols:
            vals = [float(v) for v in (x.get(m) for x in members) if _is_number(v)]
            mean, std = _mean_std(vals)
            row[f"mean({m})"] = mean
            row[f"std({m})"] = std
            row[f"count({m})"] = len(vals)
        row["ids"] = [x.get("id") for x in members]
        out.append(row)
    return out


def _resolve_group(name: str, available: set[str]) -> str:
    if name in available:
        return name
    for cand in (f"params.{name}", f"metrics.{name}"):
        if cand in available:
            return cand
    if name.startswith(("params.", "metrics.", "tags")):
        return name  # no run has it: one group of runs without it
    raise UsageError(f"--group-by: no column or param {name!r}")


def _mean_std(vals: list[float]) -> tuple[float | None, float | None]:
    if not vals:
        return None, None
    if any(math.isnan(v) for v in vals):
        return math.nan, (math.nan if len(vals) > 1 else None)
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return mean, None
    if not all(math.isfinite(v) for v in vals):
        return mean, math.nan
    return mean, statistics.stdev(vals)  # exact arithmetic: identical values give 0.0


def group_columns(rows: Sequence[Row], by: Sequence[str]) -> list[str]:
    """The columns to show for grouped rows: the group keys, ``runs``, then per
    metric its mean, std and count."""
    if not rows:
        return [*by, RUNS]
    first = rows[0]
    keys = [k for k in first if k not in (RUNS, "ids") and not k.endswith(")")]
    stats = [k for k in first if k.endswith(")")]
    return [*keys, RUNS, *stats]


def with_baseline(
    rows: Sequence[Row], baseline: Row, columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Rows with a ``delta(C)`` column per metric column ``C``: the row's value
    minus the baseline's (None when either is missing or not a number).

    ``columns`` defaults to the rows' ``metrics.*`` columns, or, for grouped
    rows, their ``mean(metrics.*)`` columns (compared with the baseline run's
    value of that metric).
    """
    if columns is None:
        columns = metric_columns(rows) or [
            k for k in dict.fromkeys(k for r in rows for k in r) if k.startswith("mean(metrics.")
        ]
    out = []
    for r in rows:
        new = dict(r)
        for c in columns:
            inner = c[5:-1] if c.startswith("mean(") and c.endswith(")") else c
            a, b = r.get(c), baseline.get(inner)
            new[f"delta({c})"] = a - b if _is_number(a) and _is_number(b) else None
        out.append(new)
    return out


def baseline_columns(columns: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """``columns`` with each metric column followed by its ``delta(...)`` column."""
    present = {k for r in rows for k in r}
    out: list[str] = []
    for c in columns:
        out.append(c)
        if f"delta({c})" in present:
            out.append(f"delta({c})")
    return out


def sort_rows(rows: Sequence[Row], column: str | None) -> list[Row]:
    """Rows sorted by ``column`` (``-column`` for descending); missing values last."""
    if not column:
        return list(rows)
    desc = column.startswith("-")
    col = resolve(column.lstrip("-+"), {k for r in rows for k in r}) if rows else column
    present = [r for r in rows if sort_key(r.get(col))[0] < 2]
    missing = [r for r in rows if sort_key(r.get(col))[0] == 2]
    present.sort(key=lambda r: sort_key(r.get(col)), reverse=desc)
    return present + missing
