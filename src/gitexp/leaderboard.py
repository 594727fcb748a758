"""The leaderboard service: the one way runs are listed.

Filters (experiment and those below it, status, tags, unless-tags), a
``where`` expression (parsed and evaluated by :mod:`gitexp.where`), sort,
offset and limit, columns, group-by and a baseline go in as a :class:`Query`;
a :class:`Leaderboard` comes out: the columns to show, the rows, the number of
rows that matched before offset and limit, and the runs that could not be read.
``git exp log``, ``gitexp.runs()``, ``git exp export``, ``git exp rm`` and the
dashboard all call :func:`leaderboard` (or :func:`select` for the filters alone).

The runs come from the catalog (:mod:`gitexp.catalog`), which only stores and
serves the index; sorting, filtering and slicing are here, on its Arrow
columns, so listing 100,000 runs builds no dict per run.

Grouping (``group_by``) answers "is this 0.2 % real?": one row per distinct
value of the grouping columns, with ``runs`` (how many runs share it) and, per
metric, ``mean(metrics.K)``, ``std(metrics.K)`` (sample standard deviation,
n-1), ``count(metrics.K)`` (the runs that have the metric) and
``ci95(metrics.K)`` (the 95 % confidence interval of the mean, Student's t:
``[low, high]``, None below two runs; :mod:`gitexp.stats`). A baseline adds
``delta(C)`` columns: each row's value of metric column ``C`` minus the
baseline run's.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

from gitexp import columns as arrow_columns
from gitexp import records as fmt
from gitexp.catalog import ABSENT, ARROW_ROWS, BASE_COLUMNS, JSON_COLUMNS, LazyRow
from gitexp.errors import UsageError
from gitexp.stats import mean_interval

if TYPE_CHECKING:
    from gitexp.catalog import RunTable
    from gitexp.store import ExpStore

Row = Mapping[str, Any]

# the columns a listing shows first, in this order: the first of the run columns
DEFAULT_COLUMNS = BASE_COLUMNS[:6]
RUNS = "runs"
STATS = ("mean", "std", "count", "ci95")
_WRAPS = (*STATS, "delta")
TAG_ADDRESS = "tag:"


@dataclass(frozen=True)
class Query:
    """What to list. Every field is optional; the default lists every run, newest first.

    Attributes:
        experiment: only this experiment and those below it (``a`` holds ``a/b``).
        status: only runs with one of these statuses.
        tags: only runs with every one of these tags.
        unless_tags: only runs with none of these tags.
        where: an expression of the query language (docs/query.md).
        sort: a column (``acc`` means ``metrics.acc`` or ``params.acc``); ``-acc`` descending.
        limit: at most this many rows (after ``offset``); None: all.
        offset: skip this many rows first.
        columns: the columns to show; None: base columns, the params that differ, the metrics.
        group_by: columns (usually params) to group the runs by.
        baseline: a run address (or ``tag:NAME``: the newest run with tag NAME) to
            compare every row with.
        every_param: default columns hold every param and ``tags`` (the shape scripts want).
    """

    experiment: str | None = None
    status: Sequence[str] = ()
    tags: Sequence[str] = ()
    unless_tags: Sequence[str] = ()
    where: str | None = None
    sort: str | None = None
    limit: int | None = None
    offset: int = 0
    columns: Sequence[str] | None = None
    group_by: Sequence[str] | None = None
    baseline: str | None = None
    every_param: bool = False

    @property
    def filtered(self) -> bool:
        """Whether anything but the whole repository was asked for."""
        return bool(
            self.experiment
            or self.status
            or self.tags
            or self.unless_tags
            or self.where is not None
            or self.limit is not None
            or self.offset
        )


@dataclass
class Leaderboard:
    """The answer to a :class:`Query`.

    Attributes:
        columns: the columns to show, in order.
        rows: one mapping per run (light rows reading the catalog's columns) or,
            grouped, one dict per group (with ``ids``: its runs); after offset and limit.
        total: how many rows (runs, or groups) matched before offset and limit.
        runs: the matching runs after sort, offset and limit (None when grouped).
        baseline: the baseline run's row, when one was asked for.
        problems: runs that could not be read (``experiment/id: reason``), left out.
        runs_in_repository: how many runs the repository holds (readable ones).
    """

    columns: list[str]
    rows: Sequence[Row]
    total: int
    runs: RunTable | None = None
    baseline: Row | None = None
    problems: list[str] = field(default_factory=list)
    runs_in_repository: int = 0

    @property
    def grouped(self) -> bool:
        """Whether the rows are groups."""
        return self.runs is None


# ---------------------------------------------------------------- checks


def check_statuses(status: Iterable[str] | None) -> None:
    """Raise UsageError for a status that is not one of :data:`gitexp.records.STATUSES`."""
    for s in status or []:
        if s not in fmt.STATUSES:
            raise UsageError(f"unknown status {s!r} (one of {', '.join(fmt.STATUSES)})")


def check_limit(limit: int | None, offset: int = 0) -> None:
    """The one check of a limit (and an offset)."""
    if limit is not None and limit < 0:
        raise UsageError(f"the limit must be positive, not {limit}")
    if offset < 0:
        raise UsageError(f"the offset must be positive, not {offset}")


# ---------------------------------------------------------- values, columns


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sort_key(value: Any) -> tuple[int, int, float, str]:
    """The one sort key: missing values and NaN last; numbers before text;
    numbers by value, anything else by its text (JSON for lists and objects)."""
    if value is ABSENT or value is None or (isinstance(value, float) and math.isnan(value)):
        return (1, 0, 0.0, "")
    if _is_number(value):
        return (0, 0, float(value), "")
    return (0, 1, 0.0, value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def resolve_column(name: str, available: Iterable[str]) -> str:
    """The one column resolver: the column ``name`` means among ``available``.

    Exact names first, then ``metrics.NAME``, then ``params.NAME``, then the
    same wrapped in ``mean(...)``, ``std(...)``, ``count(...)`` or ``delta(...)``
    (grouped rows and baselines); ``std(lr)`` resolves its inside the same way.
    A ``params.``/``metrics.`` name no run has is an empty column, not an error.

    Raises:
        UsageError: no such column.
    """
    cols = set(available)
    cands = (name, f"metrics.{name}", f"params.{name}")
    for cand in cands:
        if cand in cols:
            return cand
    for wrap in _WRAPS:
        for cand in cands:
            if f"{wrap}({cand})" in cols:
                return f"{wrap}({cand})"
    for wrap in _WRAPS:
        if name.startswith(f"{wrap}(") and name.endswith(")"):
            inner = name[len(wrap) + 1 : -1]
            for cand in (inner, f"metrics.{inner}", f"params.{inner}"):
                if f"{wrap}({cand})" in cols:
                    return f"{wrap}({cand})"
    if name.startswith(("params.", "metrics.")) or name in BASE_COLUMNS or name in ("ref", "sha"):
        return name
    raise UsageError(
        f"no column {name!r}; columns are {', '.join(DEFAULT_COLUMNS)}, params.<key>, metrics.<key>"
    )


def metric_columns(rows: Iterable[Row]) -> list[str]:
    """Every ``metrics.*`` column of the rows, sorted."""
    return sorted({k for r in rows for k in r if k.startswith("metrics.")})


# --------------------------------------------------------- runs as a table


def select(
    store: ExpStore,
    query: Query = Query(),
    problems: list[str] | None = None,
    scope: list[RunTable] | None = None,
) -> RunTable:
    """The runs matching ``query``'s filters and ``where``, newest first.

    Only runs whose refs changed since the last call are read from git. A run
    that cannot be read goes to ``problems`` and is left out. ``scope`` (when
    given) receives the runs of the repository, or of the experiment, before
    the other filters: the columns names resolve against.
    """
    from gitexp.catalog import Catalog

    check_statuses(query.status)
    if query.experiment is not None:
        fmt.validate_experiment(query.experiment)
    everything = Catalog(store).update(problems)
    if scope is not None:
        scope.append(everything)
    table = everything.filter(query.experiment)
    if scope is not None:
        scope.append(table)
    table = table.filter(status=query.status, tags=query.tags, unless_tags=query.unless_tags)
    if query.where is not None:
        table = where_table(table, query.where, columns=scope[-1].columns() if scope else None)
    return table


def where_table(
    table: RunTable, text: str, label: str = "where", columns: Iterable[str] | None = None
) -> RunTable:
    """The runs of ``table`` for which the expression ``text`` holds. Bare names
    resolve against ``columns`` (default: the columns of ``table``)."""
    import pyarrow as pa

    from gitexp.where import compile_where

    keep = compile_where(text, set(columns) if columns is not None else table.columns(), label)
    row = LazyRow(table)
    mask = []
    for i in range(len(table)):
        row.i = i
        mask.append(keep(row))
    return table.derive(table.table.filter(arrow_columns.array(mask, pa.bool_())))


def sort_table(table: RunTable, column: str, available: Iterable[str] | None = None) -> RunTable:
    """``table`` sorted by ``column`` (``-column``: descending); missing values
    and NaN last; ties keep the current order."""
    import pyarrow as pa

    desc = column.startswith("-")
    col = resolve_column(
        column.lstrip("-+"), available if available is not None else table.columns()
    )
    n = len(table)
    if n < 2:
        return table
    t = table.table
    arr = t.column(col) if col in t.column_names else None
    if (
        n >= ARROW_ROWS
        and arr is not None
        and col not in JSON_COLUMNS
        and _arrow_sortable(arr.type)
    ):
        import pyarrow.compute as pc

        if pa.types.is_floating(arr.type):
            arr = pc.if_else(pc.is_nan(arr), pa.nulls(1, arr.type)[0], arr)
        keys = pa.table({"k": arr, "pos": arrow_columns.indices(range(n))})
        order = pc.sort_indices(
            keys, sort_keys=[("k", "descending" if desc else "ascending"), ("pos", "ascending")]
        )  # nulls (missing values, NaN) at the end: the default placement
        return table.reorder(order)
    keyed = [(sort_key(v), i) for i, v in enumerate(table.values(col))]
    present = [(k[1:], i) for k, i in keyed if k[0] == 0]
    missing = [i for k, i in keyed if k[0] == 1]
    present.sort(key=lambda p: p[0], reverse=desc)
    return table.reorder(arrow_columns.indices([i for _, i in present] + missing))


def _arrow_sortable(t: Any) -> bool:
    """Numbers and text sort in Arrow as :func:`sort_key` orders them (bools do not)."""
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t))


def page(table: RunTable, offset: int = 0, limit: int | None = None) -> RunTable:
    """Rows ``offset`` .. ``offset + limit`` of ``table``."""
    check_limit(limit, offset)
    if not offset and limit is None:
        return table
    return table.slice(offset, limit)


# ------------------------------------------------------------- the service


def leaderboard(
    store: ExpStore, query: Query = Query(), problems: list[str] | None = None
) -> Leaderboard:
    """List runs as ``query`` asks: the one leaderboard of git-exp."""
    check_limit(query.limit, query.offset)
    probs: list[str] = problems if problems is not None else []
    scope: list[RunTable] = []
    table = select(store, query, probs, scope)
    everything, available_table = scope
    available = available_table.columns()
    base = baseline_row(store, query.baseline, everything) if query.baseline else None
    if query.group_by is not None:
        board = _grouped(table, query, available)
    else:
        total = len(table)
        if query.sort:
            table = sort_table(table, query.sort, available)
        table = page(table, query.offset, query.limit)
        board = Leaderboard(_run_columns(table, query, available), list(table.view()), total, table)
    if base is not None:
        metric_cols = [c for c in board.columns if c.startswith(("metrics.", "mean(metrics."))]
        if not board.grouped:  # light rows (a view of the catalog) become dicts to be extended
            keep = ("id", "ref", "sha")
            board.rows = [{c: r.get(c) for c in (*board.columns, *keep)} for r in board.rows]
        board.rows = with_baseline(board.rows, base, metric_cols)
        board.columns = baseline_columns(board.columns, board.rows)
        board.baseline = base
    board.problems = probs
    board.runs_in_repository = len(everything)
    return board


def _run_columns(table: RunTable, query: Query, available: Iterable[str]) -> list[str]:
    if query.columns:
        avail = set(available)
        return [resolve_column(c, avail) for c in query.columns]
    present = table.columns()
    metric_cols = sorted(k for k in present if k.startswith("metrics."))
    if not query.every_param:  # system/... metrics are shown when asked for by name
        metric_cols = [k for k in metric_cols if not fmt.is_system_metric(k[len("metrics.") :])]
    if query.every_param:
        params = sorted(k for k in present if k.startswith("params."))
        return [*DEFAULT_COLUMNS, "tags", *params, *metric_cols]
    return DEFAULT_COLUMNS + table.differing_params() + metric_cols


def _grouped(table: RunTable, query: Query, available: set[str]) -> Leaderboard:
    by = list(query.group_by or [])
    if not by:
        raise UsageError("grouping needs at least one column")
    keys = [_resolve_group(b, available) for b in by]
    rows = table.rows()
    wanted = None
    if query.columns:  # the metrics named (bare, or inside mean/std/count) are the ones summarized
        wanted = []
        for c in query.columns:
            if c == RUNS:
                continue
            col = resolve_column(_unwrap(c), available)
            if col.startswith("metrics.") and col not in wanted:
                wanted.append(col)
    groups: Sequence[Row] = group_rows(rows, keys, wanted)
    if query.sort:
        groups = sort_rows(groups, query.sort)
    total = len(groups)
    check_limit(query.limit, query.offset)
    end = None if query.limit is None else query.offset + query.limit
    groups = groups[query.offset : end]
    cols = group_columns(groups, keys, wanted)
    if query.columns:
        chosen = list(keys)
        for c in query.columns:
            if c in cols or _unwrap(c) != c:
                col = resolve_column(c, cols)
            else:  # a bare metric means its mean
                col = resolve_column(c, available)
                if col.startswith("metrics."):
                    col = f"mean({col})"
            if col not in chosen:
                chosen.append(col)
        cols = chosen
    return Leaderboard(cols, list(groups), total, None)


def _unwrap(name: str) -> str:
    for wrap in _WRAPS:
        if name.startswith(f"{wrap}(") and name.endswith(")"):
            return name[len(wrap) + 1 : -1]
    return name


def _resolve_group(name: str, available: set[str]) -> str:
    if name in available:
        return name
    for cand in (f"params.{name}", f"metrics.{name}"):
        if cand in available:
            return cand
    if name.startswith(("params.", "metrics.", "tags")):
        return name  # no run has it: one group of runs without it
    raise UsageError(f"no column or param {name!r} to group by")


def baseline_row(store: ExpStore, address: str, everything: RunTable | None = None) -> Row:
    """The row of the baseline run: any run address, or ``tag:NAME`` for the
    newest run with tag NAME."""
    from gitexp.catalog import Catalog, row_of

    if address.startswith(TAG_ADDRESS):
        tag = address[len(TAG_ADDRESS) :]
        table = everything if everything is not None else Catalog(store).update()
        tagged = table.filter(tags=[tag])
        if not len(tagged):
            raise UsageError(f"no run has the tag {tag!r} (for the baseline {address!r})")
        return tagged.slice(0, 1).rows()[0]
    return row_of(store.read_settled(address))


# ------------------------------------------------------ operations on rows


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float) and math.isnan(v):
        return "NaN"  # every NaN in one group (NaN != NaN would split them)
    return v


def group_rows(
    rows: Sequence[Row], by: Sequence[str], metrics: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per distinct combination of the ``by`` columns' values.

    Args:
        rows: run rows.
        by: columns to group by (``params.seed``, ``seed`` and ``status`` all work:
            bare names resolve to ``params.`` or ``metrics.`` columns).
        metrics: metric columns to summarize (default: all of them).

    A group's ``mean``/``std``/``ci95`` are over the runs that have the metric;
    a NaN value makes them NaN (a diverged seed must not hide); ``std`` and
    ``ci95`` are None for fewer than two values. Groups come in the order of their values, runs
    without the grouping param last.
    """
    if not by:
        raise UsageError("grouping needs at least one column")
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
            ci = mean_interval(vals, 0.95)
            row[f"ci95({m})"] = list(ci) if ci is not None else None
        row["ids"] = [x.get("id") for x in members]
        out.append(row)
    return out


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


def group_columns(
    rows: Sequence[Row], by: Sequence[str], metrics: Sequence[str] | None = None
) -> list[str]:
    """The columns to show for grouped rows: the group keys, ``runs``, then per
    metric its mean, std, count and 95 % interval."""
    if not rows:
        stats = [f"{s}({m})" for m in metrics or [] for s in STATS]
        return [*by, RUNS, *stats]
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
    col = resolve_column(column.lstrip("-+"), {k for r in rows for k in r}) if rows else column
    present = [r for r in rows if sort_key(r.get(col))[0] == 0]
    missing = [r for r in rows if sort_key(r.get(col))[0] == 1]
    present.sort(key=lambda r: sort_key(r.get(col))[1:], reverse=desc)
    return present + missing


# ---------------------------------------------------------- rows as Arrow


def to_arrow(rows: Sequence[Row], columns: Sequence[str] | None = None) -> Any:
    """Rows as a pyarrow Table: ``columns`` in order when given, else base
    columns in row order, then ``params.*`` and ``metrics.*``, each sorted."""
    import pyarrow as pa

    if columns is not None:
        keys = list(columns)
    else:
        seen = list(dict.fromkeys(k for r in rows for k in r))
        keys = [k for k in seen if not k.startswith(("params.", "metrics."))]
        keys += sorted(k for k in seen if k.startswith("params."))
        keys += sorted(k for k in seen if k.startswith("metrics."))
    if not rows:
        return pa.table(
            {k: pa.array([], pa.string()) for k in (keys if columns else DEFAULT_COLUMNS)}
        )
    data: dict[str, Any] = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        if k == "start":
            values = [fmt.parse_iso(v) for v in values]
        try:
            data[k] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            data[k] = pa.array(
                [None if v is None else json.dumps(v, sort_keys=True) for v in values], pa.string()
            )
    return pa.table(data)


def remotes_with_runs(store: ExpStore) -> list[str]:
    """The git remotes known (from the last fetch, no network call) to hold runs:
    those with refs under ``refs/remotes/<remote>/experiments/``, sorted."""
    names = set()
    for ref in store.repo.ref_names_under("refs/remotes/"):
        parts = ref.split("/")
        if len(parts) > 4 and parts[3] == "experiments":
            names.add(parts[2])
    return sorted(names)
