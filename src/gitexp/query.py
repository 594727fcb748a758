"""Listing runs: filters, the leaderboard, and runs as an Arrow table."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gitexp import format as fmt
from gitexp.errors import UsageError
from gitexp.store import ExpStore, RunRecord

BASE_COLUMNS = ["id", "experiment", "name", "status", "start", "duration"]


def select(
    store: ExpStore,
    experiment: str | None = None,
    status: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> list[RunRecord]:
    """Runs matching the filters, newest first. ``experiment`` includes sub-experiments."""
    for s in status or []:
        if s not in fmt.STATUSES:
            raise UsageError(f"unknown status {s!r} (one of {', '.join(fmt.STATUSES)})")
    out = []
    for rec in store.iter_records(experiment):
        if status and rec.status not in status:
            continue
        if tags and not all(t in rec.tags for t in tags):
            continue
        out.append(rec)
    out.sort(key=lambda r: (r.info.get("start_time") or "", r.run_id), reverse=True)
    return out


def row_of(rec: RunRecord) -> dict[str, Any]:
    """One flat row: base columns, ``params.*`` and ``metrics.*`` (final values)."""
    row: dict[str, Any] = {
        "id": rec.run_id,
        "experiment": rec.experiment,
        "name": rec.name,
        "status": rec.status,
        "start": rec.info.get("start_time"),
        "duration": rec.info.get("duration"),
        "exit_code": rec.info.get("exit_code"),
        "tags": rec.tags,
        "ref": str(rec.ref),
        "sha": rec.sha,
        "fingerprint": rec.info.get("fingerprint"),
        "code_commit": rec.code_commit,
    }
    for k, v in fmt.flatten(rec.params).items():
        row[f"params.{k}"] = v
    for k, v in rec.summary.final_values().items():
        row[f"metrics.{k}"] = v
    return row


def differing_params(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Param columns whose value is not the same in every row."""
    rows = list(rows)
    keys = sorted({k for r in rows for k in r if k.startswith("params.")})
    out = []
    for k in keys:
        values = {json.dumps(r.get(k), sort_keys=True) for r in rows}
        if len(values) > 1:
            out.append(k)
    return out


@dataclass
class Leaderboard:
    """Rows plus the columns to show, in order."""

    columns: list[str]
    rows: list[dict[str, Any]]


def _sort_key(value: Any) -> tuple[int, Any]:
    """(0, comparable) for a value to sort, (1, 0) for a missing one. Numbers sort
    before text, so a column whose type differs between runs (batch=32 in one,
    batch=auto in another) still sorts instead of comparing a float with a str."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, (0, float(value), ""))
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return (0, (1, 0.0, text))


def resolve_column(name: str, available: Iterable[str]) -> str:
    """Accept ``loss`` for ``metrics.loss`` (or ``params.loss``) when unambiguous."""
    available = list(available)
    if name in available or name.startswith(("params.", "metrics.")):
        return name
    for prefix in ("metrics.", "params."):
        if prefix + name in available:
            return prefix + name
    if name in BASE_COLUMNS:
        return name
    raise UsageError(
        f"no column {name!r}; columns are {', '.join(BASE_COLUMNS)}, params.<key>, metrics.<key>"
    )


def leaderboard(
    records: Sequence[RunRecord],
    sort: str | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
) -> Leaderboard:
    """The table ``git exp log`` shows: base columns, differing params, final metrics."""
    rows = [row_of(r) for r in records]
    available = sorted({k for r in rows for k in r})
    if sort:
        desc = sort.startswith("-")
        col = resolve_column(sort.lstrip("-+"), available)
        present = [r for r in rows if _sort_key(r.get(col))[0] == 0]
        missing = [r for r in rows if _sort_key(r.get(col))[0] == 1]
        present.sort(key=lambda r: _sort_key(r.get(col))[1], reverse=desc)
        rows = present + missing
    if limit is not None:
        if limit < 0:
            raise UsageError("--limit must be positive")
        rows = rows[:limit]
    if columns:
        cols = [resolve_column(c, available) for c in columns]
    else:
        metric_cols = sorted({k for r in rows for k in r if k.startswith("metrics.")})
        cols = BASE_COLUMNS + differing_params(rows) + metric_cols
    return Leaderboard(cols, rows)


def to_arrow(records: Sequence[RunRecord]) -> Any:
    """Runs as a pyarrow Table: one row per run; params and metrics flattened."""
    import pyarrow as pa

    rows = [row_of(r) for r in records]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    data: dict[str, Any] = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        if k in ("start",):
            values = [fmt.parse_iso(v) for v in values]
        try:
            data[k] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            data[k] = pa.array(
                [None if v is None else json.dumps(v, sort_keys=True) for v in values], pa.string()
            )
    if not rows:
        return pa.table({k: pa.array([], pa.string()) for k in BASE_COLUMNS})
    return pa.table(data)
