"""Everything about one run, as plain data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gitexp import records as fmt
from gitexp.store import ExpStore, RunRecord

SPARK_POINTS = 40


def _series_sample(steps: Any, values: Any) -> list[float]:
    """At most SPARK_POINTS values (numpy arrays in, floats out), evenly spaced
    over the series in step order (a step logged twice: by value)."""
    import numpy as np

    n = len(steps)
    if n <= 1 or bool(np.all(steps[1:] > steps[:-1])):  # one point a step, in order
        if n > SPARK_POINTS:
            stride = n / SPARK_POINTS
            values = values[[int(i * stride) for i in range(SPARK_POINTS - 1)] + [n - 1]]
        return [float(v) for v in values.tolist()]
    order = np.lexsort((values, steps))
    if n > SPARK_POINTS:
        stride = n / SPARK_POINTS
        order = order[[int(i * stride) for i in range(SPARK_POINTS - 1)] + [n - 1]]
    return [float(v) for v in values[order].tolist()]


def describe(
    store: ExpStore,
    rec: RunRecord,
    with_series: bool = True,
    arrays: Mapping[str, tuple[Any, Any, Any]] | None = None,
) -> dict[str, Any]:
    """A JSON-ready description of a run (params, metrics with samples, artifacts, ...).

    ``arrays``: the run's points as :func:`gitexp.metrics.key_arrays` gives them,
    when the caller has them already (the dashboard keeps them); otherwise they
    are read here. No Python object is made per point: a run of 10 million
    points is described in about the time its Parquet takes to read.
    """
    metrics: dict[str, Any] = {}
    series: dict[str, list[float]] = {}
    if with_series and rec.segments:
        if arrays is None:
            from gitexp.metrics import key_arrays

            arrays = key_arrays(store.read_metrics(rec))
        for key in rec.summary.metrics:
            if key in arrays:
                steps, values, _ = arrays[key]
                series[key] = _series_sample(steps, values)
    finals = rec.summary.final_values()
    for key in sorted(set(rec.summary.metrics) | set(rec.summary.final)):
        s = rec.summary.metrics.get(key)
        entry: dict[str, Any] = {"final": finals.get(key)}
        if s is not None:
            entry.update(
                {
                    "last": s.last,
                    "last_step": s.last_step,
                    "min": s.min,
                    "max": s.max,
                    "count": s.count,
                }
            )
        if key in series:
            entry["sample"] = series[key]
        metrics[key] = entry
    return {
        "run": rec.ref.short,
        "ref": str(rec.ref),
        "sha": rec.sha,
        "info": rec.info,
        "params": rec.params,
        "metrics": metrics,
        "artifacts": fmt.manifest_to_json(a for a in rec.artifacts if a.role != "input"),
        "inputs": fmt.manifest_to_json(rec.inputs()),
        "code": rec.code,
        "env": rec.env,
        "alerts": rec.alerts,
    }
