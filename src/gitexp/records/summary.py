"""``summary.json``: per metric last / min / max / count, and explicit final values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gitexp.errors import FormatError
from gitexp.records.jsonform import _encode_float, decode_float


@dataclass
class MetricSummary:
    """Summary of one metric key: what ``summary.json`` holds per key."""

    last: float
    last_step: int
    last_time: float  # seconds since the epoch of the last point
    min: float
    max: float
    count: int

    def to_json(self) -> dict[str, Any]:
        """JSON data with NaN/inf encoded as text."""
        return {
            "last": _encode_float(self.last),
            "last_step": self.last_step,
            "last_time": self.last_time,
            "min": _encode_float(self.min),
            "max": _encode_float(self.max),
            "count": self.count,
        }

    @classmethod
    def from_json(cls, data: Any) -> MetricSummary:
        """Parse one summary entry."""
        if not isinstance(data, dict):
            raise FormatError(f"summary.json: malformed entry {data!r}")
        try:
            return cls(
                last=decode_float(data["last"]) or 0.0,
                last_step=int(data["last_step"]),
                last_time=float(data.get("last_time", 0.0)),
                min=decode_float(data["min"]) or 0.0,
                max=decode_float(data["max"]) or 0.0,
                count=int(data["count"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"summary.json: malformed entry {data!r}") from exc

    def merge(self, other: MetricSummary) -> MetricSummary:
        """Combine two summaries of disjoint point sets of the same key."""
        later = (
            other
            if (other.last_time, other.last_step)
            >= (
                self.last_time,
                self.last_step,
            )
            else self
        )
        return MetricSummary(
            last=later.last,
            last_step=later.last_step,
            last_time=later.last_time,
            min=_nanmin(self.min, other.min),
            max=_nanmax(self.max, other.max),
            count=self.count + other.count,
        )


def _nanmin(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return min(a, b)


def _nanmax(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


@dataclass
class Summary:
    """``summary.json``: per-key metric summaries plus explicitly logged final metrics."""

    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)

    def merge(self, other: Summary) -> Summary:
        """A new summary combining this one and ``other`` (other's finals win)."""
        metrics = dict(self.metrics)
        for k, s in other.metrics.items():
            metrics[k] = metrics[k].merge(s) if k in metrics else s
        final = dict(self.final)
        final.update(other.final)
        return Summary(metrics, final)

    def final_values(self) -> dict[str, float]:
        """The number to show per metric: an explicit final, else the last value."""
        out = {k: s.last for k, s in self.metrics.items()}
        out.update(self.final)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON data for ``summary.json``."""
        return {
            "metrics": {k: s.to_json() for k, s in sorted(self.metrics.items())},
            "final": {k: _encode_float(v) for k, v in sorted(self.final.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> Summary:
        """Parse ``summary.json``."""
        if not isinstance(data, dict):
            raise FormatError("summary.json is not an object")
        metrics, final = data.get("metrics", {}), data.get("final", {})
        if not isinstance(metrics, dict) or not isinstance(final, dict):
            raise FormatError("summary.json: 'metrics' and 'final' must be objects")
        try:
            return cls(
                {str(k): MetricSummary.from_json(v) for k, v in metrics.items()},
                {str(k): decode_float(v) or 0.0 for k, v in final.items()},
            )
        except (TypeError, ValueError) as exc:
            raise FormatError(f"summary.json: malformed value: {exc}") from exc
