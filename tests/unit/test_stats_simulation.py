"""Simulation tests: A/A false-positive rates, interval coverage, sequential peeking, SRM.

Bounds come from issue 3: FPR in [0.035, 0.065] over >= 2000 experiments, coverage in
[0.93, 0.97], sequential FPR within a two-sided band around the exact crossing rate when peeking
every 100 units.
"""

from __future__ import annotations

import numpy as np
import pytest
from _sequential_reference import band, exact_crossing_rate
from scipy import special

import abrec.stats as st

N_EXP = 3000


def _mean_stats(x: np.ndarray) -> list[st.MeanStats]:
    return [
        st.MeanStats(x.shape[1], float(s), float(q))
        for s, q in zip(x.sum(axis=1), (x * x).sum(axis=1), strict=True)
    ]


def _rate(hits: list[bool]) -> float:
    return float(np.mean(hits))


def test_aa_false_positive_rates_fixed_horizon() -> None:
    rng = np.random.default_rng(1)
    n = 300
    # skewed revenue-like data (lognormal) for Welch
    c = _mean_stats(rng.lognormal(0, 1, (N_EXP, n)))
    t = _mean_stats(rng.lognormal(0, 1, (N_EXP, n)))
    fpr_welch = _rate([st.welch_ttest(a, b).p_value < 0.05 for a, b in zip(c, t, strict=True)])
    # conversions
    sc, s_t = rng.binomial(2000, 0.05, N_EXP), rng.binomial(2000, 0.05, N_EXP)
    fpr_z = _rate(
        [
            st.ztest_proportions(st.proportion_stats(2000, a), st.proportion_stats(2000, b)).p_value
            < 0.05
            for a, b in zip(sc, s_t, strict=True)
        ]
    )
    # clicks per exposure, units see different numbers of exposures
    den_c, den_t = rng.poisson(4, (N_EXP, n)) + 1.0, rng.poisson(4, (N_EXP, n)) + 1.0
    rate_c, rate_t = rng.beta(2, 18, (N_EXP, n)), rng.beta(2, 18, (N_EXP, n))
    num_c = rng.binomial(den_c.astype(int), rate_c).astype(float)
    num_t = rng.binomial(den_t.astype(int), rate_t).astype(float)

    def ratio_stats(num: np.ndarray, den: np.ndarray, i: int) -> st.RatioStats:
        a, b = num[i], den[i]
        return st.RatioStats(n, a.sum(), a @ a, b.sum(), b @ b, a @ b)

    fpr_ratio = _rate(
        [
            st.ratio_test(ratio_stats(num_c, den_c, i), ratio_stats(num_t, den_t, i)).p_value < 0.05
            for i in range(N_EXP)
        ]
    )
    # CUPED with a correlated pre-period covariate
    x_c, x_t = rng.gamma(2, 1, (N_EXP, n)), rng.gamma(2, 1, (N_EXP, n))
    y_c, y_t = x_c + rng.normal(0, 1, (N_EXP, n)), x_t + rng.normal(0, 1, (N_EXP, n))

    def cs(y: np.ndarray, x: np.ndarray, i: int) -> st.CupedStats:
        return st.CupedStats(n, y[i].sum(), y[i] @ y[i], x[i].sum(), x[i] @ x[i], x[i] @ y[i])

    fpr_cuped = _rate(
        [st.cuped_test(cs(y_c, x_c, i), cs(y_t, x_t, i)).p_value < 0.05 for i in range(N_EXP)]
    )
    fpr_mw = _rate([st.mann_whitney(num_c[i], num_t[i]).p_value < 0.05 for i in range(2000)])
    for name, fpr in [
        ("welch", fpr_welch),
        ("z", fpr_z),
        ("ratio", fpr_ratio),
        ("cuped", fpr_cuped),
        ("mann-whitney", fpr_mw),
    ]:
        assert 0.035 <= fpr <= 0.065, f"{name} A/A false-positive rate {fpr}"


def test_interval_coverage() -> None:
    rng = np.random.default_rng(2)
    n = 400
    # Welch on skewed data with a real effect: absolute and relative coverage.
    mu_c, mu_t = np.exp(0.5), 1.2 * np.exp(0.5)
    c = _mean_stats(rng.lognormal(0, 1, (N_EXP, n)))
    t = _mean_stats(rng.lognormal(np.log(1.2), 1, (N_EXP, n)))
    res = [st.welch_ttest(a, b) for a, b in zip(c, t, strict=True)]
    cov_abs = _rate([r.absolute.contains(mu_t - mu_c) for r in res])
    cov_rel = _rate([r.relative.contains(0.2) for r in res])
    # Proportions with a small control mean (1%): the log-scale relative interval must hold.
    nc = 5000
    sc, s_t = rng.binomial(nc, 0.01, N_EXP), rng.binomial(nc, 0.0125, N_EXP)
    resp = [
        st.ztest_proportions(st.proportion_stats(nc, a), st.proportion_stats(nc, b))
        for a, b in zip(sc, s_t, strict=True)
    ]
    cov_p_abs = _rate([r.absolute.contains(0.0025) for r in resp])
    cov_p_rel = _rate([r.relative.contains(0.25) for r in resp])
    for name, cov in [
        ("welch abs", cov_abs),
        ("welch rel", cov_rel),
        ("prop abs", cov_p_abs),
        ("prop rel small mean", cov_p_rel),
    ]:
        assert 0.93 <= cov <= 0.97, f"{name} coverage {cov}"


def test_sequential_fpr_under_continuous_peeking() -> None:
    rng = np.random.default_rng(3)
    n_sims, looks, per_look = 2000, 100, 100  # a look after every 100 units (50 per arm)
    half = per_look // 2
    rho = st.optimal_rho(5000)
    s = np.zeros((4, n_sims))  # sum_c, sumsq_c, sum_t, sumsq_t
    seq_reject = np.zeros(n_sims, dtype=bool)
    naive_reject = np.zeros(n_sims, dtype=bool)
    for k in range(1, looks + 1):
        xc = rng.exponential(1.0, (n_sims, half))
        xt = rng.exponential(1.0, (n_sims, half))
        s += np.stack([xc.sum(1), (xc * xc).sum(1), xt.sum(1), (xt * xt).sum(1)])
        m = k * half
        mc, mt = s[0] / m, s[2] / m
        vc = (s[1] - s[0] * mc) / (m - 1)
        vt = (s[3] - s[2] * mt) / (m - 1)
        v = vc / m + vt / m
        seq_reject |= st.always_valid_pvalue(mt - mc, v, 2 * m, rho) <= 0.05
        df = (v * v) / ((vc / m) ** 2 / (m - 1) + (vt / m) ** 2 / (m - 1))
        naive_p = 2 * special.stdtr(df, -np.abs(mt - mc) / np.sqrt(v))
        naive_reject |= naive_p < 0.05
    fpr_seq, fpr_naive = seq_reject.mean(), naive_reject.mean()
    # Two-sided: around the exact crossing rate of this schedule under known variance
    # (0.0194); skewed data and the plug-in variance at 50 units per arm add ~0.004.
    rate0 = exact_crossing_rate(per_look * np.arange(1, looks + 1) * rho * rho, 0.05)
    lo, hi = band(rate0, n_sims, extra=0.006)
    assert lo <= fpr_seq <= hi, f"sequential FPR {fpr_seq} outside [{lo:.4f}, {hi:.4f}]"
    assert fpr_naive > 0.15, f"naive peeking FPR {fpr_naive} should be inflated"


def test_monitor_matches_vectorised_and_keeps_running_min() -> None:
    rng = np.random.default_rng(4)
    rho = st.optimal_rho(2000)
    mon = st.SequentialMonitor(rho=rho)
    xc, xt = rng.normal(0, 1, 2000), rng.normal(0.15, 1, 2000)
    ps, lows, highs = [], [], []
    for k in range(100, 2001, 100):
        c, t = st.MeanStats.from_array(xc[:k]), st.MeanStats.from_array(xt[:k])
        one = st.sequential_test(c, t, rho=rho)
        v = c.var / k + t.var / k
        assert one.p_value == pytest.approx(
            float(st.always_valid_pvalue(t.mean - c.mean, v, 2 * k, rho)), rel=1e-12
        )
        r = mon.update(c, t)
        ps.append(one.p_value)
        lows.append(one.ci.low)
        highs.append(one.ci.high)
        assert r.p_value == pytest.approx(min(ps))
        assert r.ci.low == pytest.approx(max(lows))
        assert r.ci.high == pytest.approx(min(highs))
        assert r.looks == len(ps)
        assert mon.last_look == one  # the look on its own, not intersected
    assert mon.last is not None and mon.last.decision == "reject"  # true effect 0.15 sd
    with pytest.raises(st.StatsInputError, match="cumulative"):
        mon.update(st.MeanStats.from_array(xc[:100]), st.MeanStats.from_array(xt[:100]))


def test_sequential_closed_form_and_consistency() -> None:
    # Closed form (Howard et al. 2021 normal mixture): radius
    # sqrt(V (1 + n rho^2)/(n rho^2) (2 log(1/alpha) + log(1 + n rho^2))).
    c, t = st.MeanStats(1000, 1000.0, 3000.0), st.MeanStats(1000, 1100.0, 3300.0)
    res = st.sequential_test(c, t, rho=0.03)
    v = c.var / 1000 + t.var / 1000
    x = 2000 * 0.03**2
    rad = np.sqrt(v * (1 + x) / x * (2 * np.log(20) + np.log1p(x)))
    assert res.ci.high - res.estimate == pytest.approx(rad, rel=1e-12)
    # p <= alpha exactly when 0 is outside the confidence sequence
    assert (res.p_value <= 0.05) == (not res.ci.contains(0.0))
    # a CS is wider than the fixed-horizon CI at the same look
    fixed = st.welch_ttest(c, t)
    assert res.ci.width > fixed.absolute.width


def test_srm_flags_49_51_and_passes_50_50() -> None:
    from scipy.stats import chisquare

    bad = st.srm_test([49_000, 51_000], [0.5, 0.5])
    good = st.srm_test([50_000, 50_000], [0.5, 0.5])
    assert bad.mismatch and bad.chi2 == pytest.approx(40.0)  # hand: 2 * 1000^2 / 50000
    assert not good.mismatch and good.p_value == 1.0
    # Reference: scipy.stats.chisquare, three variants with unequal weights.
    obs, w = [5030, 2410, 2560], [0.5, 0.25, 0.25]
    ref = chisquare(obs, f_exp=np.array(w) * sum(obs))
    res = st.srm_test(obs, w)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.chi2 == pytest.approx(ref.statistic, rel=1e-10)
    assert res.df == 2


def test_srm_false_alarm_rate() -> None:
    rng = np.random.default_rng(5)
    counts = rng.multinomial(10_000, [0.2, 0.3, 0.5], size=5000)
    alarms = np.mean([st.srm_test(c, [2, 3, 5]).mismatch for c in counts])
    assert alarms <= 0.003  # threshold 0.001; binomial 5000 draws, 4+ sd margin
