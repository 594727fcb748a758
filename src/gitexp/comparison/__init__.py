"""Is B better than A, or is the difference noise? Two services on the statistics
of :mod:`gitexp.stats`, selecting runs through the leaderboard:

- :mod:`gitexp.comparison.compare`: ``git exp compare -a EXPR -b EXPR``: per
  metric the two means with their intervals, the difference with a bootstrap
  interval, Welch's p-value, Hedges' g and a verdict;
- :mod:`gitexp.comparison.check`: ``git exp check``: the CI gate: a run (or a
  group of seeds) against bounds and against a reference (a model version, a
  run, or a group), exit 1 when it is worse.
"""

from gitexp.comparison.check import Bound, CheckResult, CheckRow, check, parse_bound, parse_metric
from gitexp.comparison.compare import CompareResult, MetricComparison, compare

__all__ = [
    "Bound",
    "CheckResult",
    "CheckRow",
    "CompareResult",
    "MetricComparison",
    "check",
    "compare",
    "parse_bound",
    "parse_metric",
]
