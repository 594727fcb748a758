"""Everything about one run, as plain data."""

from __future__ import annotations

from typing import Any

from gitexp import records as fmt
from gitexp.store import ExpStore, RunRecord

SPARK_POINTS = 40


def _series_sample(steps: list[int], values: list[float]) -> list[float]:
    """At most SPARK_POINTS values, evenly spaced over the series in step order."""
    pairs = sorted(zip(steps, values))
    if len(pairs) <= SPARK_POINTS:
        return [v for _, v in pairs]
    stride = len(pairs) / SPARK_POINTS
    return [pairs[int(i * stride)][1] for i in range(SPARK_POINTS - 1)] + [pairs[-1][1]]


def describe(store: ExpStore, rec: RunRecord, with_series: bool = True) -> dict[str, Any]:
    """A JSON-ready description of a run (params, metrics with samples, artifacts, ...)."""
    metrics: dict[str, Any] = {}
    series: dict[str, list[float]] = {}
    if with_series and rec.segments:
        from gitexp.metrics import series as key_series

        table = store.read_metrics(rec)
        for key in rec.summary.metrics:
            steps, values = key_series(table, key)
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
