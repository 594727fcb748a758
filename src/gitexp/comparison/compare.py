"""``git exp compare``: two groups of runs, each selected by a ``--where``
expression through the leaderboard, compared metric by metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitexp.errors import RunNotFound, UsageError
from gitexp.leaderboard import Query, resolve_column, select, where_table
from gitexp.stats import Comparison, compare_samples
from gitexp.store import ExpStore

if TYPE_CHECKING:
    from gitexp.catalog import RunTable


@dataclass
class Side:
    """One side of a comparison: its expression and the runs it selected."""

    label: str  # "A" or "B"
    expression: str
    runs: list[str]  # experiment/run-id
    table: RunTable = field(repr=False)

    def values(self, column: str) -> list[float]:
        """The side's numeric values of ``column`` (runs without one left out)."""
        out = []
        for v in self.table.values(column):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
        return out


@dataclass
class MetricComparison:
    """One metric compared."""

    metric: str  # the column, metrics.<key>
    result: Comparison

    def to_json(self) -> dict[str, Any]:
        """``{"metric": key, mean_a, mean_b, n_a, n_b, diff, ci_low, ci_high, ...}``."""
        return {"metric": self.metric.removeprefix("metrics."), **self.result.to_json()}


@dataclass
class CompareResult:
    """What ``compare`` found: both sides and one comparison per metric."""

    a: Side
    b: Side
    metrics: list[MetricComparison]
    alpha: float
    overlap: list[str]  # runs on both sides

    def to_json(self) -> list[dict[str, Any]]:
        """One object per metric."""
        return [m.to_json() for m in self.metrics]


def select_side(
    store: ExpStore,
    label: str,
    expression: str,
    experiment: str | None = None,
    runs: RunTable | None = None,
) -> Side:
    """The runs ``expression`` selects (the ``--where`` language), as one side;
    from ``runs`` when given (the runs of the experiment, selected once for
    both sides), else through the leaderboard.

    Raises:
        RunNotFound: the expression matches no run.
    """
    if not expression or not expression.strip():
        raise UsageError(f"side {label} has no expression")
    if runs is not None:
        table = where_table(runs, expression)
    else:
        table = select(store, Query(experiment=experiment, where=expression))
    if not len(table):
        where = f" in experiment {experiment}" if experiment else ""
        raise RunNotFound(f"side {label} ({expression}) matches no run{where}")
    ids = [f"{e}/{i}" for e, i in zip(table.values("experiment"), table.values("id"))]
    return Side(label, expression, ids, table)


def metric_columns(sides: Sequence[Side], metrics: Sequence[str]) -> list[str]:
    """The ``metrics.*`` columns to compare: those named (bare names resolve as in
    ``git exp log``), else every metric both sides have."""
    if metrics:
        out = []
        available = set().union(*(s.table.columns() for s in sides))
        for m in metrics:
            col = resolve_column(m, available | {f"metrics.{m}"})
            if not col.startswith("metrics."):
                raise UsageError(f"{m!r} is not a metric")
            if col not in out:
                out.append(col)
        return out
    common = None
    for s in sides:
        cols = {c for c in s.table.columns() if c.startswith("metrics.")}
        common = cols if common is None else common & cols
    found = sorted(common or [])
    if not found:
        raise UsageError("the two sides have no metric in common")
    return found


def compare(
    store: ExpStore,
    a: str,
    b: str,
    metrics: Sequence[str] = (),
    alpha: float = 0.05,
    experiment: str | None = None,
) -> CompareResult:
    """Compare the runs expression ``a`` selects with those ``b`` selects.

    Raises:
        RunNotFound: a side matches no run.
        UsageError: a bad expression or alpha, a name that is no metric.
    """
    if not (isinstance(alpha, float | int) and 0 < alpha < 1) or math.isnan(alpha):
        raise UsageError(f"alpha must be between 0 and 1, not {alpha}")
    runs = select(store, Query(experiment=experiment))  # the catalog read once for both
    side_a = select_side(store, "A", a, experiment, runs)
    side_b = select_side(store, "B", b, experiment, runs)
    cols = metric_columns([side_a, side_b], metrics)
    results = [
        MetricComparison(col, compare_samples(side_a.values(col), side_b.values(col), alpha))
        for col in cols
    ]
    overlap = sorted(set(side_a.runs) & set(side_b.runs))
    return CompareResult(side_a, side_b, results, float(alpha), overlap)
