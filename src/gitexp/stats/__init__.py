"""Statistics for "is this difference real?": intervals, tests and effect sizes.

Pure functions on lists of numbers; the distributions come from scipy
(imported inside the functions that need it, so importing this package costs
nothing): Student's t for the confidence interval of a mean, Welch's t-test
(``scipy.stats.ttest_ind(equal_var=False)``) for two groups, the one-sample
t-test for a group against a single run, ``scipy.stats.bootstrap`` for the
interval of a difference of means. The effect size is Hedges' g (Cohen's d
with the exact small-sample correction: a handful of seeds is the usual sample).
"""

from gitexp.stats.significance import (
    BOOTSTRAP_RESAMPLES,
    Comparison,
    compare_samples,
    hedges_g,
    mean_interval,
    worse_test,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "Comparison",
    "compare_samples",
    "hedges_g",
    "mean_interval",
    "worse_test",
]
