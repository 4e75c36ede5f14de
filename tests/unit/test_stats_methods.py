"""Bayesian, power, bootstrap and multiple-testing functions against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special
from scipy import stats as sps

import abrec.stats as st


def _miller_prob_b_beats_a(a_a: int, b_a: int, a_b: int, b_b: int) -> float:
    """Evan Miller's closed form for P(p_B > p_A), Beta posteriors with integer a_b.

    Source: https://www.evanmiller.org/bayesian-ab-testing.html (Formulas, eq. for Pr(p_B > p_A)).
    """
    i = np.arange(a_b)
    terms = (
        special.betaln(a_a + i, b_a + b_b)
        - np.log(b_b + i)
        - special.betaln(1 + i, b_b)
        - special.betaln(a_a, b_a)
    )
    return float(np.exp(terms).sum())


def test_bayes_proportions_against_closed_form() -> None:
    c, t = st.proportion_stats(1000, 100), st.proportion_stats(1000, 120)
    res = st.bayes_proportions(c, t, n_draws=400_000, seed=7)
    ref = _miller_prob_b_beats_a(1 + 100, 1 + 900, 1 + 120, 1 + 880)
    assert res.prob_beat_control == pytest.approx(ref, abs=0.003)  # MC sd ~ 0.0005
    # Reference: expected loss E[max(p_c - p_t, 0)] by numerical integration (scipy.quad):
    # E[(X - y)+] = a/(a+b) (1 - I_y(a+1, b)) - y (1 - I_y(a, b)) for X ~ Beta(a, b).
    a_c, b_c, a_t, b_t = 101, 901, 121, 881

    def integrand(y: float) -> float:
        tail = a_c / (a_c + b_c) * sps.beta.sf(y, a_c + 1, b_c) - y * sps.beta.sf(y, a_c, b_c)
        return float(sps.beta.pdf(y, a_t, b_t) * tail)

    loss, _ = integrate.quad(integrand, 0, 1, points=[0.1, 0.12], limit=200)
    assert res.expected_loss == pytest.approx(loss, rel=0.03)
    assert res.control_mean == pytest.approx(101 / 1002)
    assert res.credible_interval.low < 0.02 < res.credible_interval.high
    again = st.bayes_proportions(c, t, n_draws=400_000, seed=7)
    assert again == res  # seeded, deterministic


def test_bayes_means_flat_prior_closed_form() -> None:
    rng = np.random.default_rng(11)
    c, t = rng.normal(5, 2, 500), rng.normal(5.2, 2, 600)
    res = st.bayes_means(st.MeanStats.from_array(c), st.MeanStats.from_array(t))
    m = t.mean() - c.mean()
    s = math.sqrt(c.var(ddof=1) / 500 + t.var(ddof=1) / 600)
    # Closed form with a flat prior: D ~ N(m, s^2); P(D > 0) = Phi(m/s).
    assert res.prob_beat_control == pytest.approx(sps.norm.cdf(m / s), rel=1e-12)
    # Reference: E[max(-D, 0)] by numerical integration.
    loss, _ = integrate.quad(lambda d: -d * sps.norm.pdf(d, m, s), -np.inf, 0)
    assert res.expected_loss == pytest.approx(loss, rel=1e-6)
    assert res.credible_interval.low == pytest.approx(m - 1.959963984540054 * s, rel=1e-9)
    # A tight prior at 0 shrinks both means towards 0.
    shrunk = st.bayes_means(
        st.MeanStats.from_array(c), st.MeanStats.from_array(t), prior_mean=0.0, prior_sd=0.05
    )
    assert abs(shrunk.control_mean) < abs(res.control_mean)


def test_bayes_ratio_runs_on_delta_variance() -> None:
    rng = np.random.default_rng(12)
    den_c, den_t = rng.poisson(5, 2000) + 1.0, rng.poisson(5, 2000) + 1.0
    num_c, num_t = (
        rng.binomial(den_c.astype(int), 0.1) * 1.0,
        rng.binomial(den_t.astype(int), 0.13) * 1.0,
    )
    c, t = st.RatioStats.from_arrays(num_c, den_c), st.RatioStats.from_arrays(num_t, den_t)
    res = st.bayes_ratio(c, t)
    freq = st.ratio_test(c, t, alternative="greater")
    # With a flat prior, P(beat) = 1 - one-sided p-value of the delta-method z-test.
    assert res.prob_beat_control == pytest.approx(1 - freq.p_value, rel=1e-9)


@pytest.mark.parametrize(
    ("alternative", "sm_alt"), [("two-sided", "two-sided"), ("greater", "larger")]
)
def test_power_means_matches_statsmodels(alternative: str, sm_alt: str) -> None:
    from statsmodels.stats.power import NormalIndPower

    # Reference: statsmodels NormalIndPower (z-test, nobs2 = ratio * nobs1).
    ref = NormalIndPower().power(
        effect_size=0.1 / 2.0, nobs1=1500, alpha=0.05, ratio=2.0, alternative=sm_alt
    )
    assert st.power_means(0.1, 2.0, 1500, 3000, alternative=alternative) == pytest.approx(
        ref, rel=1e-9
    )
    n_ref = NormalIndPower().solve_power(
        effect_size=0.05, alpha=0.05, power=0.8, ratio=2.0, alternative=sm_alt
    )
    res = st.sample_size_means(0.1, 2.0, ratio=2.0, alternative=alternative)
    assert res.n_control == math.ceil(n_ref)
    assert res.n_treatment == math.ceil(2 * res.n_control)
    mde = st.mde_means(2.0, 1500, 3000, alternative=alternative)
    assert st.power_means(mde, 2.0, 1500, 3000, alternative=alternative) == pytest.approx(0.8)


def test_power_proportions_matches_statsmodels() -> None:
    from statsmodels.stats.proportion import power_proportions_2indep

    # Reference: statsmodels power_proportions_2indep (pooled SE under H0, unpooled under H1).
    # Its prop1 = prop2 + diff is our treatment, nobs1 its size, ratio = n_control / n_treatment.
    ref = power_proportions_2indep(0.01, 0.10, nobs1=6000, ratio=4000 / 6000, return_results=False)
    assert st.power_proportions(0.10, 0.01, 4000, 6000) == pytest.approx(ref, rel=1e-9)
    ref1 = power_proportions_2indep(
        0.01, 0.10, nobs1=6000, ratio=4000 / 6000, alternative="larger", return_results=False
    )
    assert st.power_proportions(0.10, 0.01, 4000, 6000, alternative="greater") == pytest.approx(
        ref1, rel=1e-9
    )


def test_sample_size_proportions_closed_form_and_simulation() -> None:
    base, mde = 0.05, 0.01
    res = st.sample_size_proportions(base, mde, ratio=1.0)
    # Closed form (Fleiss, Levin & Paik 2003, eq. 4.14 without continuity correction).
    p1, p2 = base, base + mde
    pbar = (p1 + p2) / 2
    za, zb = sps.norm.ppf(0.975), sps.norm.ppf(0.8)
    n_fleiss = (
        za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / mde**2
    assert abs(res.n_control - math.ceil(n_fleiss)) <= 1  # we include the far tail
    rel = st.sample_size_proportions(base, 0.2, relative=True)
    assert rel.n_control == res.n_control
    # Simulation: the test run at that n detects the effect ~80% of the time.
    rng = np.random.default_rng(13)
    n = res.n_control
    sc, s_t = rng.binomial(n, p1, 4000), rng.binomial(n, p2, 4000)
    hits = np.mean(
        [
            st.ztest_proportions(st.proportion_stats(n, a), st.proportion_stats(n, b)).p_value
            < 0.05
            for a, b in zip(sc, s_t, strict=True)
        ]
    )
    assert 0.77 <= hits <= 0.83
    mde_back = st.mde_proportions(base, n, n)
    assert mde_back == pytest.approx(mde, rel=2e-3)
    assert st.mde_proportions(base, n, n, relative=True) == pytest.approx(mde_back / base)
    unequal = st.sample_size_proportions(base, mde, ratio=3.0)
    assert unequal.n_treatment == math.ceil(3 * unequal.n_control)
    assert st.power_proportions(base, mde, unequal.n_control, unequal.n_treatment) >= 0.8


def test_bootstrap_matches_scipy() -> None:
    rng = np.random.default_rng(14)
    x = rng.lognormal(0, 1, 300)
    for method in ("percentile", "bca"):
        ours = st.bootstrap(x, np.mean, n_resamples=20_000, method=method, seed=1)
        # Reference: scipy.stats.bootstrap (different random stream, same estimator).
        ref = sps.bootstrap((x,), np.mean, n_resamples=20_000, method=method, random_state=2)
        se = ref.standard_error  # Monte Carlo error of each endpoint is about 0.03 se
        assert ours.interval.low == pytest.approx(ref.confidence_interval.low, abs=0.1 * se)
        assert ours.interval.high == pytest.approx(ref.confidence_interval.high, abs=0.1 * se)
        assert ours.std_error == pytest.approx(se, rel=0.03)
    assert st.bootstrap(x, np.mean, seed=3) == st.bootstrap(x, np.mean, seed=3)


def test_bootstrap_two_samples_bca_matches_scipy() -> None:
    rng = np.random.default_rng(15)
    c, t = rng.exponential(1.0, 120), rng.exponential(1.3, 150)

    def diff_median(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(b, axis=axis) - np.median(a, axis=axis)

    ours = st.bootstrap((c, t), diff_median, n_resamples=20_000, method="bca", seed=4)
    ref = sps.bootstrap((c, t), diff_median, n_resamples=20_000, method="BCa", random_state=5)
    se = ref.standard_error
    assert ours.interval.estimate == pytest.approx(np.median(t) - np.median(c))
    assert ours.interval.low == pytest.approx(ref.confidence_interval.low, abs=0.08 * se)
    assert ours.interval.high == pytest.approx(ref.confidence_interval.high, abs=0.08 * se)


def test_holm_and_bh_match_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(16)
    p = np.concatenate([rng.uniform(0, 0.05, 6), rng.uniform(0, 1, 14), [0.01, 0.01]])
    # Reference: statsmodels multipletests(method="holm" / "fdr_bh").
    assert np.allclose(st.holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    assert np.allclose(st.benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    # Hand-computed: p = (0.01, 0.04, 0.03) -> Holm (0.03, 0.06, 0.06), BH (0.03, 0.04, 0.04).
    assert np.allclose(st.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    assert np.allclose(st.benjamini_hochberg([0.01, 0.04, 0.03]), [0.03, 0.04, 0.04])
