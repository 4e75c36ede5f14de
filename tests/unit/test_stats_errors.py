"""Bad input raises StatsInputError with a message that says what to do; never a silent NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest

import abrec.stats as st


def test_error_is_value_error_and_not_ours() -> None:
    assert issubclass(st.StatsInputError, ValueError)
    assert st.StatsInputError.__module__ == "abrec.stats.errors"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: st.MeanStats.from_array([1.0, math.nan]), "NaN"),
        (lambda: st.MeanStats(-1, 0.0, 0.0), "non-negative"),
        (lambda: st.MeanStats(3, 6.0, 1.0), "sum_sq"),
        (lambda: st.MeanStats(3, math.inf, 1.0), "finite"),
        (lambda: st.proportion_stats(10, 11), "cannot exceed"),
        (lambda: st.proportion_stats(10, -1), "non-negative"),
        (lambda: st.RatioStats.from_arrays([1.0, 2.0], [1.0]), "same length"),
        (lambda: st.CupedStats.from_arrays([1.0, 2.0, 3.0], [1.0, 2.0]), "same length"),
        (lambda: st.welch_ttest(st.MeanStats(0, 0, 0), st.MeanStats(5, 5, 6)), "at least"),
        (
            lambda: st.welch_ttest(st.MeanStats(5, 10, 20), st.MeanStats(5, 15, 45)),
            "zero variance",
        ),
        (
            lambda: st.ztest_proportions(st.proportion_stats(50, 0), st.proportion_stats(60, 0)),
            "zero variance",
        ),
        (
            lambda: st.ztest_proportions(st.MeanStats(5, 10, 30), st.proportion_stats(5, 2)),
            "0/1",
        ),
        (
            lambda: st.welch_ttest(st.MeanStats(5, 5, 6), st.MeanStats(5, 5, 7), alpha=1.5),
            "alpha",
        ),
        (
            lambda: st.welch_ttest(
                st.MeanStats(5, 5, 6), st.MeanStats(5, 5, 7), alternative="bigger"
            ),
            "alternative",
        ),
        (
            lambda: st.ratio_test(st.RatioStats(3, 1, 1, 0, 0, 0), st.RatioStats(3, 1, 1, 2, 2, 1)),
            "denominator",
        ),
        (lambda: st.mann_whitney([], [1.0, 2.0]), "empty"),
        (lambda: st.mann_whitney([1.0, 1.0], [1.0, 1.0]), "identical"),
        (lambda: st.srm_test([10, -1], [1, 1]), "non-negative"),
        (lambda: st.srm_test([10, 10, 10], [1, 1]), "one entry per variant"),
        (lambda: st.srm_test([0, 0], [1, 1]), "no units"),
        (lambda: st.holm([0.1, math.nan]), "finite"),
        (lambda: st.benjamini_hochberg([0.1, 1.2]), r"\[0, 1\]"),
        (lambda: st.sample_size_proportions(0.95, 0.1), "outside"),
        (lambda: st.sample_size_means(0.0, 1.0), "non-zero"),
        (lambda: st.power_means(0.1, -1.0, 100, 100), "std"),
        (lambda: st.bootstrap([1.0, 2.0, 3.0], np.mean, method="bc"), "method"),
        (lambda: st.bootstrap([1.0, 2.0, 3.0], lambda x: 1.0), "axis"),
        (lambda: st.sequential_test(st.MeanStats(5, 5, 6), st.MeanStats(5, 5, 7), rho=-1), "rho"),
        (
            lambda: st.bayes_proportions(
                st.proportion_stats(10, 1), st.proportion_stats(10, 2), prior_alpha=0
            ),
            "positive",
        ),
    ],
)
def test_bad_input_raises(call: object, match: str) -> None:
    assert callable(call)
    with pytest.raises(st.StatsInputError, match=match):
        call()


def test_one_group_with_zero_variance_is_fine() -> None:
    res = st.welch_ttest(st.MeanStats(5, 10, 20), st.MeanStats.from_array([1.0, 2, 3, 4, 5]))
    assert math.isfinite(res.p_value) and math.isfinite(res.absolute.low)


def test_zero_control_mean_gives_explicit_note_not_silent_nan() -> None:
    res = st.ztest_proportions(st.proportion_stats(100, 0), st.proportion_stats(100, 5))
    assert any("control mean is 0" in n for n in res.notes)
    assert res.relative.low == -math.inf and res.relative.high == math.inf
    assert math.isfinite(res.p_value) and math.isfinite(res.absolute.low)


def test_small_counts_are_flagged_in_notes() -> None:
    res = st.ztest_proportions(st.proportion_stats(200, 3), st.proportion_stats(200, 12))
    assert any("normal approximation" in n for n in res.notes)
    big = st.ztest_proportions(st.proportion_stats(2000, 300), st.proportion_stats(2000, 320))
    assert big.notes == ()
