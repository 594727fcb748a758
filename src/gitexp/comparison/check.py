"""``git exp check``: the CI gate.

The candidate (one run, or a group selected by an expression: seeds) passes
when every bound holds (``min``: the mean is at least the value, ``max``: at
most) and, against a reference (a model version ``NAME@STAGE``, a run, or a
group), every compared metric is at least as good within the tolerance. With
one run on each side that is a plain comparison; when either side is a group,
the significance test decides: the candidate fails only when it is worse by
more than the tolerance with p below alpha (one-sided Welch's t-test, or the
one-sample test against a single run).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitexp.comparison.compare import select_side
from gitexp.errors import UsageError
from gitexp.records import decode_float
from gitexp.registry.ops import is_model_address, resolve
from gitexp.stats import worse_test
from gitexp.store import ExpStore

GOALS = ("max", "min")  # higher is better, lower is better


@dataclass(frozen=True)
class Bound:
    """``metric`` must be at least (``min``) or at most (``max``) ``value``."""

    metric: str
    kind: str
    value: float


def parse_metric(text: str) -> tuple[str, str]:
    """``acc`` -> (acc, max), ``loss:min`` -> (loss, min)."""
    name, sep, goal = text.rpartition(":")
    if not sep:
        name, goal = text, "max"
    if goal not in GOALS or not name:
        raise UsageError(f"{text!r}: give METRIC, METRIC:max (higher is better) or METRIC:min")
    return name, goal


def parse_bound(text: str, kind: str) -> Bound:
    """``acc=0.9`` as a bound of ``kind`` (``min`` or ``max``)."""
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name or math.isnan(number):
        raise UsageError(f"{text!r}: give METRIC=NUMBER")
    return Bound(name.strip(), kind, number)


def parse_tolerance(text: str | float) -> tuple[float, bool]:
    """``0.01`` (absolute) or ``1%`` (relative to the reference) -> (value, relative)."""
    raw = str(text).strip()
    relative = raw.endswith("%")
    try:
        value = float(raw[:-1] if relative else raw)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value < 0 or math.isinf(value):
        raise UsageError(f"tolerance {text!r}: give a number >= 0, or a percentage such as 1%")
    return (value / 100 if relative else value), relative


@dataclass
class Party:
    """A side of the check: what it is, and its values per metric column."""

    label: str
    runs: list[str]
    values: Mapping[str, list[float]] = field(default_factory=dict)

    def of(self, column: str) -> list[float]:
        """The numeric values of ``column``."""
        return list(self.values.get(column, []))


@dataclass
class CheckRow:
    """One line of the gate: a bound, or a metric compared with the reference."""

    metric: str
    kind: str  # "min", "max" (a bound) or "reference"
    goal: str  # "max" or "min": which way is better
    candidate: float | None  # the candidate's mean
    reference: float | None  # the bound, or the reference's mean
    n_candidate: int
    n_reference: int
    diff: float | None  # candidate - reference
    tolerance: float | None
    p_value: float | None
    test: str | None
    passed: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The row as JSON data (NaN as null)."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in self.__dict__.items()
        }


@dataclass
class CheckResult:
    """The gate's answer: every row, and whether all passed."""

    candidate: Party
    reference: Party | None
    rows: list[CheckRow]
    alpha: float

    @property
    def passed(self) -> bool:
        """True when every row passed."""
        return all(r.passed for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        """The result as JSON data."""
        return {
            "passed": self.passed,
            "candidate": {"label": self.candidate.label, "runs": self.candidate.runs},
            "reference": (
                {"label": self.reference.label, "runs": self.reference.runs}
                if self.reference is not None
                else None
            ),
            "alpha": self.alpha,
            "rows": [r.to_json() for r in self.rows],
        }


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _party_of_run(store: ExpStore, address: str, columns: Sequence[str]) -> Party:
    from gitexp.catalog import row_of

    rec = store.read_settled(address)
    row = row_of(rec)
    values = {}
    for c in columns:
        v = row.get(c)
        values[c] = [float(v)] if isinstance(v, (int, float)) and not isinstance(v, bool) else []
    return Party(f"run {rec.ref.short}", [rec.ref.short], values)


def _party_of_where(
    store: ExpStore, label: str, expression: str, columns: Sequence[str], experiment: str | None
) -> Party:
    side = select_side(store, label, expression, experiment)
    values = {c: side.values(c) for c in columns}
    return Party(f"{len(side.runs)} run(s) where {expression}", side.runs, values)


def _party_of_model(store: ExpStore, address: str, columns: Sequence[str]) -> Party:
    version = resolve(store, address)
    metrics = version.data.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    values: dict[str, list[float]] = {}
    for c in columns:
        raw = metrics.get(c.removeprefix("metrics."))
        try:
            v = decode_float(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            v = None
        values[c] = [v] if v is not None else []
    run = version.run.get("experiment"), version.run.get("id")
    short = f"{run[0]}/{run[1]}"
    return Party(f"{address} ({version.label}, run {short})", [short], values)


def check(
    store: ExpStore,
    run: str | None = None,
    where: str | None = None,
    metrics: Sequence[str] = (),
    bounds: Sequence[Bound] = (),
    against: str | None = None,
    against_where: str | None = None,
    tolerance: str | float = 0.0,
    alpha: float = 0.05,
    experiment: str | None = None,
) -> CheckResult:
    """Check a candidate (``run``, or the group ``where`` selects) against
    ``bounds`` and, metric by metric (``metrics``: ``NAME`` or ``NAME:max``
    higher is better, ``NAME:min`` lower is better), against a reference
    (``against``: ``NAME@STAGE`` or a run; ``against_where``: a group).

    Raises:
        UsageError: no candidate or two, nothing to check, a bad value.
        RunNotFound, ModelNotFound: a side that names nothing.
    """
    if (run is None) == (where is None):
        raise UsageError("name the candidate: one run, or an expression for a group of runs")
    if against is not None and against_where is not None:
        raise UsageError("give one reference: a run or model version, or an expression")
    if not (0 < alpha < 1):
        raise UsageError(f"alpha must be between 0 and 1, not {alpha}")
    tol, relative = parse_tolerance(tolerance)
    has_reference = against is not None or against_where is not None
    goals = dict(parse_metric(m) for m in metrics)
    if goals and not has_reference:
        raise UsageError("metrics to compare need a reference to compare them with")
    if has_reference and not goals:
        raise UsageError("name the metrics to compare with the reference")
    if not goals and not bounds:
        raise UsageError("nothing to check: give bounds, or metrics and a reference")

    def column(name: str) -> str:
        if name.startswith("params."):
            raise UsageError(f"{name!r} is not a metric")
        return name if name.startswith("metrics.") else f"metrics.{name}"

    cols = {name: column(name) for name in [*goals, *(b.metric for b in bounds)]}
    wanted = sorted(set(cols.values()))
    if run is not None:
        cand = _party_of_run(store, run, wanted)
    else:
        assert where is not None
        cand = _party_of_where(store, "candidate", where, wanted, experiment)
    ref: Party | None = None
    if against is not None:
        if is_model_address(against):
            ref = _party_of_model(store, against, wanted)
        else:
            ref = _party_of_run(store, against, wanted)
    elif against_where is not None:
        ref = _party_of_where(store, "reference", against_where, wanted, experiment)
    rows: list[CheckRow] = []
    for b in bounds:
        col = cols[b.metric]
        values = cand.of(col)
        mean = _mean(values)
        row = CheckRow(
            metric=col,
            kind=b.kind,
            goal="max" if b.kind == "min" else "min",
            candidate=mean,
            reference=b.value,
            n_candidate=len(values),
            n_reference=0,
            diff=None,
            tolerance=None,
            p_value=None,
            test=None,
            passed=False,
            reason="the candidate has no finite value",
        )
        rows.append(row)
        if mean is None or not math.isfinite(mean):
            continue
        row.diff = mean - b.value
        row.passed = mean >= b.value if b.kind == "min" else mean <= b.value
        word = "at least" if b.kind == "min" else "at most"
        row.reason = f"{'is' if row.passed else 'is not'} {word} {b.value:g}"
    for name, goal in goals.items():
        assert ref is not None
        col = cols[name]
        cv, rv = cand.of(col), ref.of(col)
        cm, rm = _mean(cv), _mean(rv)
        row = CheckRow(
            metric=col,
            kind="reference",
            goal=goal,
            candidate=cm,
            reference=rm,
            n_candidate=len(cv),
            n_reference=len(rv),
            diff=None,
            tolerance=None,
            p_value=None,
            test=None,
            passed=False,
            reason="",
        )
        rows.append(row)
        if cm is None or rm is None:
            row.reason = "the candidate has no value" if cm is None else "the reference has none"
            continue
        if not (math.isfinite(cm) and math.isfinite(rm)):
            row.reason = "NaN or infinite values"
            continue
        row.diff = cm - rm
        row.tolerance = tol * abs(rm) if relative else tol
        if len(cv) < 2 and len(rv) < 2:
            better = cm >= rm - row.tolerance if goal == "max" else cm <= rm + row.tolerance
            row.passed = better
            row.reason = "as good or better" if better else "worse"
            if better and (cm < rm if goal == "max" else cm > rm):
                row.reason = "worse, within tolerance"
            continue
        row.p_value, row.test = worse_test(cv, rv, goal, row.tolerance)
        if row.p_value is None:
            row.reason = "no test possible for these values"
            continue
        worse = row.p_value < alpha
        row.passed = not worse
        row.reason = f"worse (p < {alpha:g})" if worse else f"not worse (p >= {alpha:g})"
    return CheckResult(cand, ref, rows, alpha)
