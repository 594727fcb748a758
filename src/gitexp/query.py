"""Listing runs: filters, the leaderboard, and runs as an Arrow table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitexp import records as fmt
from gitexp.errors import UsageError
from gitexp.store import ExpStore, RunRecord

if TYPE_CHECKING:
    from gitexp.catalog import RunTable

BASE_COLUMNS = ["id", "experiment", "name", "status", "start", "duration"]


def select(
    store: ExpStore,
    experiment: str | None = None,
    status: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    problems: list[str] | None = None,
) -> list[RunRecord]:
    """Runs matching the filters, newest first. ``experiment`` includes sub-experiments.

    Runs that cannot be read are reported in ``problems`` (when given) and skipped.
    """
    _check_statuses(status)
    out = []
    for rec in store.iter_records(experiment, problems=problems):
        if status and rec.status not in status:
            continue
        if tags and not all(t in rec.tags for t in tags):
            continue
        out.append(rec)
    out.sort(key=lambda r: (r.info.get("start_time") or "", r.run_id), reverse=True)
    return out


def select_table(
    store: ExpStore,
    experiment: str | None = None,
    status: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    problems: list[str] | None = None,
) -> RunTable:
    """The runs matching the filters, newest first, as columns from the catalog.

    Only runs whose refs changed since the last call are read from git.
    """
    from gitexp.catalog import Catalog

    _check_statuses(status)
    if experiment:
        fmt.validate_experiment(experiment)
    return Catalog(store).update(problems).filter(experiment, status, tags)


def _check_statuses(status: Sequence[str] | None) -> None:
    for s in status or []:
        if s not in fmt.STATUSES:
            raise UsageError(f"unknown status {s!r} (one of {', '.join(fmt.STATUSES)})")


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
        first = rows[0].get(k)
        if any(r.get(k) != first or type(r.get(k)) is not type(first) for r in rows):
            out.append(k)
    return out


@dataclass
class Leaderboard:
    """Rows plus the columns to show, in order."""

    columns: list[str]
    rows: list[dict[str, Any]]


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
    rows: Sequence[dict[str, Any]],
    sort: str | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
) -> Leaderboard:
    """The table ``git exp log`` shows: base columns, differing params, final metrics."""
    from gitexp.catalog import sort_key as _sort_key

    rows = list(rows)
    available = sorted({k for r in rows for k in r})
    if sort:
        desc = sort.startswith("-")
        col = resolve_column(sort.lstrip("-+"), available)
        present = [r for r in rows if _sort_key(r.get(col))[0] == 0]
        missing = [r for r in rows if _sort_key(r.get(col))[0] == 1]
        present.sort(key=lambda r: _sort_key(r.get(col))[1:], reverse=desc)
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


def leaderboard_of(
    table: RunTable,
    columns: Sequence[str] | None = None,
    available: Iterable[str] | None = None,
    every_param: bool = False,
) -> Leaderboard:
    """:func:`leaderboard` of a (sorted, limited) RunTable, computed on its columns:
    light rows that read only the columns shown, so listing 100,000 runs builds
    no dict per run.

    The default columns are the base ones, the params that differ between the
    runs (``every_param``: all params, and ``tags``: the shape scripts want,
    whatever the filter), then every final metric.
    """
    if columns:
        avail = sorted(available if available is not None else table.columns())
        cols = [resolve_column(c, avail) for c in columns]
    else:
        present = table.columns()
        metric_cols = sorted(k for k in present if k.startswith("metrics."))
        if every_param:
            params = sorted(k for k in present if k.startswith("params."))
            cols = [*BASE_COLUMNS, "tags", *params, *metric_cols]
        else:
            cols = BASE_COLUMNS + table.differing_params() + metric_cols
    return Leaderboard(cols, table.view())  # type: ignore[arg-type]


def to_arrow(rows: Sequence[dict[str, Any]]) -> Any:
    """Rows (``RunTable.rows()`` or :func:`row_of` dicts) as a pyarrow Table: base
    columns in row order, then ``params.*`` and ``metrics.*``, each sorted."""
    import pyarrow as pa

    seen = list(dict.fromkeys(k for r in rows for k in r))
    keys = [k for k in seen if not k.startswith(("params.", "metrics."))]
    keys += sorted(k for k in seen if k.startswith("params."))
    keys += sorted(k for k in seen if k.startswith("metrics."))
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
