"""Bootstrap CIs and paired tests against scipy/statsmodels references and simulation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from abrec.errors import DataError
from abrec.evaluation import significance as S
from abrec.evaluation.protocol import mean_cis


def test_paired_ttest_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3))
    b = a + rng.normal(0.1, 1.0, size=(200, 3))
    got = S.paired_ttest(a, b)
    ref = sps.ttest_rel(a, b, axis=0)
    np.testing.assert_allclose(got.statistic, ref.statistic, rtol=1e-10)
    np.testing.assert_allclose(got.p_value, ref.pvalue, rtol=1e-10)


def test_paired_ttest_identical_samples() -> None:
    a = np.arange(10.0)
    res = S.paired_ttest(a, a)
    assert res.p_value[0] == 1.0
    assert S.wilcoxon_signed_rank(a, a).p_value[0] == 1.0
    assert S.permutation_test(a, a, 200).p_value[0] == 1.0


def test_wilcoxon_matches_scipy_approx_with_ties_and_zeros() -> None:
    rng = np.random.default_rng(1)
    # Metric-like values: many ties and zero differences.
    a = rng.integers(0, 5, size=(300, 4)) / 4.0
    b = rng.integers(0, 5, size=(300, 4)) / 4.0 + np.array([0, 0.05, 0.1, 0.0])
    got = S.wilcoxon_signed_rank(a, b)
    for j in range(4):
        ref = sps.wilcoxon(
            a[:, j], b[:, j], zero_method="wilcox", correction=False, method="approx"
        )
        assert got.p_value[j] == pytest.approx(ref.pvalue, rel=1e-9)
        d = a[:, j] - b[:, j]
        d = d[d != 0]
        r = sps.rankdata(np.abs(d))
        assert got.statistic[j] == pytest.approx(r[d > 0].sum())


def test_wilcoxon_exact_small_sample_matches_scipy() -> None:
    b = np.zeros(8)
    a = np.array([0.5, -1.25, 2.0, 3.5, 0.75, -0.125, 4.0, 1.5])
    got = S.wilcoxon_signed_rank(a, b)
    ref = sps.wilcoxon(a, b, method="exact")
    assert got.p_value[0] == pytest.approx(ref.pvalue, rel=1e-12)


def test_permutation_matches_exact_enumeration() -> None:
    rng = np.random.default_rng(2)
    d = rng.normal(0.4, 1.0, size=12)
    obs = abs(d.mean())
    flips = np.array(list(itertools.product([-1.0, 1.0], repeat=12)))
    exact = float(np.mean(np.abs(flips @ d) / 12 >= obs - 1e-12))
    n_perm = 40_000
    got = S.permutation_test(d, np.zeros(12), n_permutations=n_perm, seed=5).p_value[0]
    sd = np.sqrt(exact * (1 - exact) / n_perm)
    expected = (1 + n_perm * exact) / (n_perm + 1)  # E[(1 + B) / (N + 1)]
    assert abs(got - expected) < 4 * sd


@pytest.mark.parametrize("n_perm", [1, 9, 99, 2_000])
def test_permutation_p_counts_the_observed_statistic_exactly(n_perm: int) -> None:
    """Phipson & Smyth (2010): p = (1 + B) / (N + 1), B = random flips at least as extreme.

    With 60 positive differences only the identity and the all-negative flip reach the
    observed |mean| (chance 2 / 2^60 per draw), so B = 0 and p = 1 / (N + 1) exactly,
    whatever the random stream.
    """
    d = np.linspace(0.5, 3.0, 60)
    got = S.permutation_test(d, np.zeros(60), n_permutations=n_perm, seed=3).p_value[0]
    assert got == 1.0 / (n_perm + 1)


def test_permutation_p_lies_on_the_phipson_smyth_lattice() -> None:
    """p (N + 1) - 1 = B is a whole number in [0, N]; its mean over seeds is N times the
    exact (enumerated) tail probability."""
    rng = np.random.default_rng(8)
    d = rng.normal(0.3, 1.0, size=10)
    flips = np.array(list(itertools.product([-1.0, 1.0], repeat=10)))
    exact = float(np.mean(np.abs(flips @ d) >= abs(d.sum()) - 1e-12))
    n_perm = 499
    counts = []
    for seed in range(40):
        p = S.permutation_test(d, np.zeros(10), n_permutations=n_perm, seed=seed).p_value[0]
        b = p * (n_perm + 1) - 1
        assert b == pytest.approx(round(b), abs=1e-9) and 0 <= round(b) <= n_perm
        counts.append(round(b))
    sd = np.sqrt(exact * (1 - exact) / (n_perm * 40))
    assert abs(np.mean(counts) / n_perm - exact) < 4 * sd


def test_permutation_is_seeded_and_vectorised_over_columns() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    r1 = S.permutation_test(a, b, 2000, seed=7)
    r2 = S.permutation_test(a, b, 2000, seed=7)
    np.testing.assert_array_equal(r1.p_value, r2.p_value)
    assert ((r1.p_value > 0) & (r1.p_value <= 1)).all()


def test_permutation_null_calibration() -> None:
    # Under H0, P(p <= 0.05) should be about 0.05: 400 columns, binomial bound.
    rng = np.random.default_rng(4)
    a = rng.normal(size=(30, 400))
    b = rng.normal(size=(30, 400))
    p = S.permutation_test(a, b, 999, seed=1).p_value
    rate = float((p <= 0.05).mean())
    assert abs(rate - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 400)


@pytest.mark.parametrize("seed", [0, 1])
def test_holm_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.05, 4), rng.uniform(0, 1, 6), [0.02, 0.02]])
    ref = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(S.holm(p), ref, rtol=1e-12)


def test_holm_passes_nan() -> None:
    out = S.holm(np.array([0.01, np.nan, 0.04]))
    np.testing.assert_allclose(out, [0.02, np.nan, 0.04], equal_nan=True)


def test_mean_cis_close_to_scipy_percentile() -> None:
    rng = np.random.default_rng(5)
    x = rng.exponential(size=400)
    got = mean_cis(x, n_boot=4000, level=0.95, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=2)
    se = x.std() / np.sqrt(len(x))
    assert got.mean[0] == pytest.approx(x.mean())
    assert abs(got.low[0] - ref.confidence_interval.low) < 0.15 * se
    assert abs(got.high[0] - ref.confidence_interval.high) < 0.15 * se
    ninety = mean_cis(x, n_boot=4000, level=0.90, seed=1)
    assert got.low[0] < ninety.low[0] < ninety.high[0] < got.high[0]


def test_mean_cis_coverage_simulation() -> None:
    # 300 datasets (as columns) of n=100 normal draws with true mean 0: coverage ~ 0.95.
    rng = np.random.default_rng(6)
    x = rng.normal(size=(100, 300))
    ci = mean_cis(x, n_boot=1000, level=0.95, seed=2)
    cover = float(((ci.low <= 0) & (ci.high >= 0)).mean())
    assert abs(cover - 0.95) < 4 * np.sqrt(0.95 * 0.05 / 300) + 0.01


def test_mean_cis_nan_columns_single_values_and_determinism() -> None:
    x = np.array(
        [[1.0, np.nan, np.nan], [2.0, 4.0, 7.0], [3.0, 6.0, np.nan], [4.0, np.nan, np.nan]]
    )
    ci = mean_cis(x, n_boot=500, level=0.95, seed=3)
    np.testing.assert_allclose(ci.mean, [2.5, 5.0, 7.0])
    np.testing.assert_array_equal(ci.n, [4, 2, 1])
    assert 1.0 <= ci.low[0] < ci.high[0] <= 4.0
    assert 4.0 <= ci.low[1] <= ci.high[1] <= 6.0
    assert ci.low[2] == ci.high[2] == 7.0
    ci2 = mean_cis(x, n_boot=500, level=0.95, seed=3)
    np.testing.assert_array_equal(ci.low, ci2.low)
    with pytest.raises(DataError, match="no values"):
        mean_cis(np.full((3, 1), np.nan), n_boot=500, level=0.95, seed=0)


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="equal shapes"):
        S.paired_ttest(np.zeros(3), np.zeros(4))
    with pytest.raises(DataError, match="NaN"):
        S.permutation_test(np.array([1.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="confidence"):
        mean_cis(np.arange(3.0), n_boot=500, level=1.5, seed=0)
