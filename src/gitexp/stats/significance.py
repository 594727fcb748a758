"""Intervals, tests and effect sizes for two groups of runs (seeds, usually).

Conventions: ``diff`` is ``mean(b) - mean(a)`` (how far B is from A); a group
of one run has no spread of its own, so against a group it is compared as a
fixed value (one-sample t-test), and two single runs have no test at all.
Values that are NaN or infinite make a comparison impossible, never quietly
dropped: a diverged seed is a result too.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # the interval is the same every time it is asked for
BOOTSTRAP_CELLS = 4_000_000  # resampled values held in memory at once


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """The ``confidence`` interval of the mean of ``values`` (Student's t, n-1
    degrees of freedom): None for fewer than two values; NaN bounds when a
    value is NaN or infinite."""
    n = len(values)
    if n < 2:
        return None
    if not _finite(values):
        return (math.nan, math.nan)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    if sd == 0:
        return (mean, mean)
    from scipy.special import stdtrit

    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Hedges' g of B against A: ``(mean(b) - mean(a))`` over the pooled standard
    deviation (``n_a + n_b - 2`` degrees of freedom), times the exact small-sample
    correction ``J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2))``. None when it is not
    defined: fewer than two degrees of freedom, or no spread within the groups."""
    na, nb = len(a), len(b)
    df = na + nb - 2
    if df < 2 or not (_finite(a) and _finite(b)):
        return None
    var_a = statistics.variance(a) if na > 1 else 0.0
    var_b = statistics.variance(b) if nb > 1 else 0.0
    pooled = math.sqrt(((na - 1) * var_a + (nb - 1) * var_b) / df)
    if pooled == 0:
        return None
    from scipy.special import gammaln

    j = math.exp(float(gammaln(df / 2) - gammaln((df - 1) / 2)) - 0.5 * math.log(df / 2))
    return (statistics.fmean(b) - statistics.fmean(a)) / pooled * j


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """A context in which scipy's and numpy's warnings about degenerate data
    (zero variance, tiny samples) stay quiet: the callers handle those cases."""
    import numpy as np

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _ttest(
    a: Sequence[float], b: Sequence[float], alternative: str = "two-sided"
) -> tuple[float | None, str | None]:
    """p-value and test of "the mean of B differs from A's" (``alternative``
    ``less``: B's is lower, ``greater``: higher): Welch's t-test for two groups,
    the one-sample t-test for a group against one run, none for two runs."""
    na, nb = len(a), len(b)
    if na < 1 or nb < 1 or (na < 2 and nb < 2):
        return None, None
    from scipy import stats

    with _quiet():
        if na >= 2 and nb >= 2:
            test = "welch"
            p = float(stats.ttest_ind(b, a, equal_var=False, alternative=alternative).pvalue)
        elif na == 1:
            test = "one-sample"
            p = float(stats.ttest_1samp(b, a[0], alternative=alternative).pvalue)
        else:
            test = "one-sample"
            flip = {"less": "greater", "greater": "less"}.get(alternative, alternative)
            p = float(stats.ttest_1samp(a, b[0], alternative=flip).pvalue)
    if math.isnan(p):
        spread = (statistics.variance(a) if na > 1 else 0.0) + (
            statistics.variance(b) if nb > 1 else 0.0
        )
        if spread != 0:
            return None, test
        # no spread at all: the difference is exact, not noise
        d = statistics.fmean(b) - statistics.fmean(a)
        if alternative == "less":
            p = 0.0 if d < 0 else 1.0
        elif alternative == "greater":
            p = 0.0 if d > 0 else 1.0
        else:
            p = 0.0 if d != 0 else 1.0
    return p, test


def worse_test(
    candidate: Sequence[float], reference: Sequence[float], goal: str, tolerance: float = 0.0
) -> tuple[float | None, str | None]:
    """One-sided p-value of "the candidate is worse than the reference by more
    than ``tolerance``" (``goal`` ``max``: higher is better, ``min``: lower is);
    None when there is no test (a single run on each side)."""
    if goal == "max":  # worse: candidate + tolerance < reference
        shifted = [c + tolerance for c in candidate]
        return _ttest(reference, shifted, "less")
    shifted = [c - tolerance for c in candidate]  # worse: candidate - tolerance > reference
    return _ttest(reference, shifted, "greater")


def _bootstrap_diff(
    a: Sequence[float], b: Sequence[float], confidence: float
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(b) - mean(a)`` (a side of one run
    is held fixed)."""
    import inspect

    import numpy as np
    from scipy import stats

    kw: dict[str, Any] = {
        "confidence_level": confidence,
        "n_resamples": BOOTSTRAP_RESAMPLES,
        "method": "percentile",
        "vectorized": True,
    }
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    if "rng" in inspect.signature(stats.bootstrap).parameters:
        kw["rng"] = rng
    else:  # scipy before 1.15
        kw["random_state"] = rng
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 1 or len(b) == 1:
        fixed, sample, sign = (xa[0], xb, 1.0) if len(a) == 1 else (xb[0], xa, -1.0)
        kw["batch"] = max(1, BOOTSTRAP_CELLS // len(sample))

        def one(x: Any, axis: int = -1) -> Any:
            return sign * (np.mean(x, axis=axis) - fixed)

        with _quiet():
            ci = stats.bootstrap((sample,), one, **kw).confidence_interval
    else:
        kw["batch"] = max(1, BOOTSTRAP_CELLS // (len(a) + len(b)))

        def two(x: Any, y: Any, axis: int = -1) -> Any:
            return np.mean(y, axis=axis) - np.mean(x, axis=axis)

        with _quiet():
            ci = stats.bootstrap((xa, xb), two, **kw).confidence_interval
    low, high = float(ci.low), float(ci.high)
    if math.isnan(low) or math.isnan(high):  # no spread: every resample is the same
        d = statistics.fmean(b) - statistics.fmean(a)
        return d, d
    return low, high


@dataclass
class Comparison:
    """Two groups of values of one metric, compared (see :func:`compare_samples`)."""

    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    std_a: float | None
    std_b: float | None
    ci_a: tuple[float, float] | None  # the confidence interval of each mean
    ci_b: tuple[float, float] | None
    diff: float | None  # mean_b - mean_a
    ci_low: float | None  # bootstrap interval of diff
    ci_high: float | None
    p_value: float | None
    test: str | None  # "welch", "one-sample" or None
    effect_size: float | None  # Hedges' g of B against A
    significant: bool
    alpha: float
    verdict: str

    def to_json(self) -> dict[str, Any]:
        """The comparison as JSON data (NaN as null)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            return v

        return {k: clean(v) for k, v in self.__dict__.items()}


def compare_samples(
    a: Sequence[float], b: Sequence[float], alpha: float = 0.05, confidence: float | None = None
) -> Comparison:
    """Compare the values of one metric in group A and group B: each mean with
    its ``confidence`` interval (default ``1 - alpha``), the difference with a
    bootstrap interval, the p-value of Welch's t-test (one-sample against a
    single run), Hedges' g, and a verdict in words."""
    conf = 1 - alpha if confidence is None else confidence
    a, b = [float(v) for v in a], [float(v) for v in b]
    na, nb = len(a), len(b)
    mean_a = statistics.fmean(a) if a else None
    mean_b = statistics.fmean(b) if b else None
    std_a = statistics.stdev(a) if na > 1 and _finite(a) else None
    std_b = statistics.stdev(b) if nb > 1 and _finite(b) else None
    ci_a, ci_b = mean_interval(a, conf), mean_interval(b, conf)
    diff = mean_b - mean_a if mean_a is not None and mean_b is not None else None
    out = Comparison(
        n_a=na,
        n_b=nb,
        mean_a=mean_a,
        mean_b=mean_b,
        std_a=std_a,
        std_b=std_b,
        ci_a=ci_a,
        ci_b=ci_b,
        diff=diff,
        ci_low=None,
        ci_high=None,
        p_value=None,
        test=None,
        effect_size=None,
        significant=False,
        alpha=alpha,
        verdict="",
    )
    if not (na and nb):
        out.verdict = "cannot compare: a side has no value of this metric"
        return out
    if not (_finite(a) and _finite(b)):
        bad = "A" if not _finite(a) else "B"
        out.verdict = f"cannot compare: side {bad} has NaN or infinite values"
        return out
    out.effect_size = hedges_g(a, b)
    if na < 2 and nb < 2:
        out.verdict = "not significant: n too small (one run on each side, no noise estimate)"
        return out
    out.ci_low, out.ci_high = _bootstrap_diff(a, b, conf)
    out.p_value, out.test = _ttest(a, b)
    if out.p_value is None:
        out.verdict = "not significant: the test is undefined for these values"
    elif out.p_value < alpha:
        out.significant = True
        assert diff is not None
        way = "higher" if diff > 0 else "lower"
        out.verdict = f"significant at {alpha:g}: B is {way} by {abs(diff):.4g}"
    else:
        out.verdict = f"not significant at {alpha:g}: n too small or difference within noise"
    return out
