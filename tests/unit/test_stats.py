"""gitexp.stats against scipy itself, on known data."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from gitexp.leaderboard import group_rows
from gitexp.stats import compare_samples, hedges_g, mean_interval, worse_test

# Welch's classic example (unequal variances, unequal sizes)
A = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
B = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
SEEDS_A = [0.9012, 0.9034, 0.8991, 0.9050, 0.9003]
SEEDS_B = [0.9101, 0.9122, 0.9087, 0.9140, 0.9095]


@pytest.mark.parametrize("a,b", [(A, B), (SEEDS_A, SEEDS_B), (B[:4], A[:9])])
def test_the_p_value_is_welchs_t_test_as_scipy_computes_it(a, b):
    c = compare_samples(a, b)
    expected = st.ttest_ind(b, a, equal_var=False)
    assert c.test == "welch"
    assert c.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert c.significant is bool(expected.pvalue < 0.05)
    assert c.diff == pytest.approx(sum(b) / len(b) - sum(a) / len(a))


def test_welchs_textbook_example_is_significant_at_five_percent():
    c = compare_samples(A, B)
    assert c.p_value == pytest.approx(0.0214, abs=1e-4)  # t = 2.46, df = 25.0
    assert c.verdict.startswith("significant at 0.05: B is higher")


@pytest.mark.parametrize("values", [A, SEEDS_B, [1.0, 2.0]])
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_the_interval_of_a_mean_is_students_t_as_scipy_gives_it(values, confidence):
    low, high = mean_interval(values, confidence)
    m = sum(values) / len(values)
    want = st.t.interval(confidence, len(values) - 1, loc=m, scale=st.sem(values))
    assert (low, high) == pytest.approx(want, rel=1e-12)


def test_one_run_against_a_group_is_a_one_sample_test():
    c = compare_samples([0.95], SEEDS_A)
    assert c.test == "one-sample"
    assert c.p_value == pytest.approx(st.ttest_1samp(SEEDS_A, 0.95).pvalue, rel=1e-12)
    assert c.ci_a is None and c.ci_b is not None


def test_one_sided_worse_test_matches_scipy_and_the_tolerance_shifts_it():
    p, test = worse_test(SEEDS_A, SEEDS_B, "max")
    assert test == "welch"
    want = st.ttest_ind(SEEDS_A, SEEDS_B, equal_var=False, alternative="less").pvalue
    assert p == pytest.approx(want)
    assert p < 0.05  # A is clearly below B: worse
    tolerated, _ = worse_test(SEEDS_A, SEEDS_B, "max", tolerance=0.02)
    assert tolerated > 0.5  # within 0.02 of B: not worse
    losses, _ = worse_test(SEEDS_B, SEEDS_A, "min")  # lower is better: B's higher values are worse
    assert losses < 0.05


def test_hedges_g_is_cohens_d_with_the_exact_small_sample_correction():
    a, b = [0.9, 0.91, 0.92], [0.93, 0.94, 0.95]
    d = 3.0  # difference 0.03 over a pooled standard deviation of 0.01
    j = math.gamma(2) / (math.sqrt(2) * math.gamma(1.5))
    assert hedges_g(a, b) == pytest.approx(d * j)
    assert hedges_g([1.0], [2.0]) is None
    assert hedges_g([1.0, 1.0], [2.0, 2.0]) is None  # no spread to measure by


def test_the_bootstrap_interval_holds_the_difference_and_is_the_same_every_time():
    first, again = compare_samples(A, B), compare_samples(A, B)
    assert first.ci_low < first.diff < first.ci_high
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert first.ci_high - first.ci_low < 4  # a sane width for these data


def test_two_single_runs_have_no_test_and_nan_is_not_compared():
    c = compare_samples([0.9], [0.95])
    assert c.p_value is None and not c.significant and "n too small" in c.verdict
    nan = compare_samples([0.9, math.nan], [0.95, 0.96])
    assert nan.p_value is None and "NaN" in nan.verdict
    assert nan.to_json()["mean_a"] is None  # JSON holds no NaN


def test_identical_seeds_differ_exactly_and_the_json_has_every_key():
    c = compare_samples([1.0, 1.0], [2.0, 2.0])
    assert c.p_value == 0.0 and c.significant
    keys = {"mean_a", "mean_b", "n_a", "n_b", "diff", "ci_low", "ci_high", "p_value"}
    assert keys | {"effect_size", "significant"} <= set(c.to_json())


def test_group_by_gives_the_95_percent_interval_of_each_mean():
    rows = [{"id": str(i), "params.lr": 0.1, "metrics.acc": v} for i, v in enumerate(SEEDS_A)]
    rows.append({"id": "x", "params.lr": 0.2, "metrics.acc": 0.5})
    g1, g2 = group_rows(rows, ["lr"])
    want = st.t.interval(0.95, 4, loc=sum(SEEDS_A) / 5, scale=st.sem(SEEDS_A))
    assert g1["ci95(metrics.acc)"] == pytest.approx(list(want), rel=1e-12)
    assert g2["ci95(metrics.acc)"] is None  # one run: no interval
