"""Metric series for the browser: downsampled on the server, each bucket's min and max kept.

A curve is drawn from at most ``max_points`` buckets of consecutive points:
the bucket's last step and time, the mean of its values (the line), and its
min and max (the band). A series with fewer points than that is sent as
logged, without a band. Non-finite values (NaN, ±inf) stay out of the means
and bands; a bucket with no finite value is a gap (``None``).
"""

from __future__ import annotations

from typing import Any

DEFAULT_POINTS = 1000
MAX_POINTS = 20_000
MIN_POINTS = 10


def _listed(values: Any) -> list[float | None]:
    """A float array as JSON numbers, non-finite values as None (a gap)."""
    import numpy as np

    finite = np.isfinite(values)
    if finite.all():
        return [float(v) for v in values.tolist()]
    return [float(v) if ok else None for v, ok in zip(values.tolist(), finite.tolist())]


def downsample(steps: Any, values: Any, times: Any, max_points: int) -> dict[str, Any]:
    """One series (numpy arrays in step order) as JSON-ready data.

    Returns ``{"step", "time", "value", "points", "downsampled"}`` and, when
    downsampled, ``"min"`` and ``"max"``; ``time`` is seconds since the epoch.
    """
    import numpy as np

    n = len(steps)
    if n <= max_points:
        return {
            "step": [int(s) for s in steps.tolist()],
            "time": [t / 1e6 for t in times.tolist()],
            "value": _listed(values),
            "points": n,
            "downsampled": False,
        }
    edges = (np.arange(max_points, dtype=np.int64) * n) // max_points
    last = np.append(edges[1:], n) - 1
    finite = np.isfinite(values)
    if finite.all():  # the usual case: no copy of the values, no mask
        counts = np.diff(np.append(edges, n))
        mean = np.add.reduceat(values, edges) / counts
        lo = np.minimum.reduceat(values, edges)
        hi = np.maximum.reduceat(values, edges)
    else:
        clean = np.where(finite, values, 0.0)
        counts = np.add.reduceat(finite.astype(np.int64), edges)
        sums = np.add.reduceat(clean, edges)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        lo = np.minimum.reduceat(np.where(finite, values, np.inf), edges)
        hi = np.maximum.reduceat(np.where(finite, values, -np.inf), edges)
        lo = np.where(counts > 0, lo, np.nan)
        hi = np.where(counts > 0, hi, np.nan)
    return {
        "step": [int(s) for s in steps[last].tolist()],
        "time": [t / 1e6 for t in times[last].tolist()],
        "value": _listed(mean),
        "min": _listed(lo),
        "max": _listed(hi),
        "points": n,
        "downsampled": True,
    }


def check_points(max_points: int | None) -> int:
    """The number of buckets asked for, within bounds."""
    if max_points is None:
        return DEFAULT_POINTS
    return max(MIN_POINTS, min(MAX_POINTS, int(max_points)))
