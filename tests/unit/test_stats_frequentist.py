"""Fixed-horizon tests against scipy, statsmodels, tea-tasting and closed forms."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps

import abrec.stats as st


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_matches_scipy(rng: np.random.Generator, alternative: str) -> None:
    c, t = rng.normal(10, 2, 80), rng.normal(10.5, 3, 120)
    res = st.welch_ttest(
        st.MeanStats.from_array(c), st.MeanStats.from_array(t), alternative=alternative
    )
    # Reference: scipy.stats.ttest_ind(equal_var=False) (Welch) and its confidence_interval().
    ref = sps.ttest_ind(t, c, equal_var=False, alternative=alternative)
    ci = ref.confidence_interval(0.95)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert res.df == pytest.approx(ref.df, rel=1e-9)
    assert res.absolute.low == pytest.approx(ci.low, rel=1e-9)
    assert res.absolute.high == pytest.approx(ci.high, rel=1e-9)
    assert res.absolute.estimate == pytest.approx(t.mean() - c.mean())


def test_meanstats_closed_form() -> None:
    x = np.array([1.0, 2.0, 4.0, 7.0])
    s = st.MeanStats.from_array(x)
    assert (s.n, s.sum, s.sum_sq) == (4, 14.0, 70.0)
    assert s.mean == 3.5
    # hand-computed: deviations -2.5,-1.5,.5,3.5 -> squares sum 21 -> / 3 = 7
    assert s.var == pytest.approx(7.0)
    assert (s + s).n == 8


def test_relative_ci_is_log_delta_closed_form(rng: np.random.Generator) -> None:
    c, t = rng.exponential(2.0, 400), rng.exponential(2.4, 500)
    res = st.welch_ttest(st.MeanStats.from_array(c), st.MeanStats.from_array(t))
    # Closed form: log(mt/mc) +- t_q * sqrt(vc/(nc mc^2) + vt/(nt mt^2)), Welch df on those.
    a = c.var(ddof=1) / (c.size * c.mean() ** 2)
    b = t.var(ddof=1) / (t.size * t.mean() ** 2)
    df = (a + b) ** 2 / (a * a / (c.size - 1) + b * b / (t.size - 1))
    q = sps.t.ppf(0.975, df)
    lr = math.log(t.mean() / c.mean())
    assert res.relative.low == pytest.approx(math.exp(lr - q * math.sqrt(a + b)) - 1, rel=1e-9)
    assert res.relative.high == pytest.approx(math.exp(lr + q * math.sqrt(a + b)) - 1, rel=1e-9)
    assert res.relative.estimate == pytest.approx(t.mean() / c.mean() - 1)


@pytest.mark.parametrize("alternative", ["two-sided", "larger", "smaller"])
def test_ztest_matches_statsmodels(alternative: str) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    nc, sc, nt, stt = 1000, 112, 1100, 150
    ours = {"two-sided": "two-sided", "larger": "greater", "smaller": "less"}[alternative]
    res = st.ztest_proportions(
        st.proportion_stats(nc, sc), st.proportion_stats(nt, stt), alternative=ours
    )
    # Reference: statsmodels proportions_ztest (pooled variance under H0).
    z, p = proportions_ztest([stt, sc], [nt, nc], alternative=alternative)
    assert res.p_value == pytest.approx(p, rel=1e-9)
    assert res.statistic == pytest.approx(z, rel=1e-9)
    if ours == "two-sided":
        # Reference: statsmodels Wald interval for the difference (unpooled).
        lo, hi = confint_proportions_2indep(stt, nt, sc, nc, method="wald", compare="diff")
        assert res.absolute.low == pytest.approx(lo, rel=1e-9)
        assert res.absolute.high == pytest.approx(hi, rel=1e-9)


def test_ztest_unpooled_matches_tea_tasting() -> None:
    import tea_tasting as tt
    from tea_tasting.aggr import Aggregates

    m = tt.Proportion("y", method="norm", correction=False, equal_var=False)
    a_c = Aggregates(count_=1000, mean_={"y": 0.112})
    a_t = Aggregates(count_=1100, mean_={"y": 150 / 1100})
    ref = m.analyze_aggregates(a_c, a_t)
    res = st.ztest_proportions(
        st.proportion_stats(1000, 112), st.proportion_stats(1100, 150), pooled=False
    )
    # Reference: tea-tasting Proportion(norm, no continuity correction, unpooled).
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.absolute.low == pytest.approx(ref.effect_size_ci_lower, rel=1e-9)
    assert res.relative.low == pytest.approx(ref.rel_effect_size_ci_lower, rel=1e-9)
    assert res.relative.high == pytest.approx(ref.rel_effect_size_ci_upper, rel=1e-9)


def _ratio_data(rng: np.random.Generator, n: int, rate: float) -> tuple[np.ndarray, np.ndarray]:
    den = rng.poisson(5, n) + 1.0
    num = rng.binomial(den.astype(int), rate).astype(float)
    return num, den


def test_ratio_delta_method_equals_linearisation(rng: np.random.Generator) -> None:
    num_c, den_c = _ratio_data(rng, 3000, 0.10)
    num_t, den_t = _ratio_data(rng, 3200, 0.11)
    res = st.ratio_test(
        st.RatioStats.from_arrays(num_c, den_c), st.RatioStats.from_arrays(num_t, den_t)
    )

    # Closed form (Deng et al. 2018): Var(R) = Var(num - R den) / (n mean(den)^2),
    # i.e. the variance of the linearised per-unit values.
    def var_r(num: np.ndarray, den: np.ndarray) -> float:
        r = num.sum() / den.sum()
        lin = (num - r * den) / den.mean()
        return float(lin.var(ddof=1) / num.size)

    se = math.sqrt(var_r(num_c, den_c) + var_r(num_t, den_t))
    assert res.std_error == pytest.approx(se, rel=1e-9)
    diff = num_t.sum() / den_t.sum() - num_c.sum() / den_c.sum()
    assert res.absolute.estimate == pytest.approx(diff)
    assert res.p_value == pytest.approx(2 * sps.norm.sf(abs(diff) / se), rel=1e-9)


def test_ratio_and_cuped_match_tea_tasting(rng: np.random.Generator) -> None:
    import tea_tasting as tt
    from tea_tasting.aggr import Aggregates

    def aggr(cols: dict[str, np.ndarray]) -> Aggregates:
        names = sorted(cols)
        return Aggregates(
            count_=len(cols[names[0]]),
            mean_={k: float(v.mean()) for k, v in cols.items()},
            var_={k: float(v.var(ddof=1)) for k, v in cols.items()},
            cov_={
                (a, b): float(np.cov(cols[a], cols[b])[0, 1]) for a in names for b in names if a < b
            },
        )

    num_c, den_c = _ratio_data(rng, 2000, 0.10)
    num_t, den_t = _ratio_data(rng, 2100, 0.12)
    ref = tt.RatioOfMeans("n", "d", use_t=False).analyze_aggregates(
        aggr({"n": num_c, "d": den_c}), aggr({"n": num_t, "d": den_t})
    )
    res = st.ratio_test(
        st.RatioStats.from_arrays(num_c, den_c), st.RatioStats.from_arrays(num_t, den_t)
    )
    # Reference: tea-tasting RatioOfMeans (delta method, normal distribution).
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-7)
    assert res.absolute.low == pytest.approx(ref.effect_size_ci_lower, rel=1e-7)
    assert res.relative.high == pytest.approx(ref.rel_effect_size_ci_upper, rel=1e-7)

    x_c, x_t = rng.gamma(2, 5, 1500), rng.gamma(2, 5, 1600)
    y_c = 0.8 * x_c + rng.normal(0, 4, 1500)
    y_t = 0.8 * x_t + rng.normal(0.5, 4, 1600)
    ref2 = tt.Mean("y", "x").analyze_aggregates(
        aggr({"y": y_c, "x": x_c}), aggr({"y": y_t, "x": x_t})
    )
    res2 = st.cuped_test(st.CupedStats.from_arrays(y_c, x_c), st.CupedStats.from_arrays(y_t, x_t))
    # Reference: tea-tasting Mean with covariate (CUPED, pooled theta, Welch t).
    assert res2.control_mean == pytest.approx(ref2.control, rel=1e-9)
    assert res2.treatment_mean == pytest.approx(ref2.treatment, rel=1e-9)
    assert res2.p_value == pytest.approx(ref2.pvalue, rel=1e-7)
    assert res2.absolute.high == pytest.approx(ref2.effect_size_ci_upper, rel=1e-9)
    assert res2.relative.low == pytest.approx(ref2.rel_effect_size_ci_lower, rel=1e-9)


def test_cuped_variance_reduction_is_squared_correlation(rng: np.random.Generator) -> None:
    n = 20_000
    x_c, x_t = rng.normal(0, 1, n), rng.normal(0, 1, n)
    y_c = 0.6 * x_c + 0.8 * rng.normal(0, 1, n)
    y_t = 0.6 * x_t + 0.8 * rng.normal(0, 1, n) + 0.02
    res = st.cuped_test(st.CupedStats.from_arrays(y_c, x_c), st.CupedStats.from_arrays(y_t, x_t))
    # Closed form: CUPED reduces variance by corr(x, y)^2 = 0.36 here (Deng et al. 2013).
    assert res.variance_reduction == pytest.approx(0.36, abs=0.02)
    # Regression reference: the adjusted effect equals mean(y_t - theta x_t) - mean(y_c - theta x_c).
    allx, ally = np.concatenate([x_c, x_t]), np.concatenate([y_c, y_t])
    theta = np.cov(ally, allx)[0, 1] / allx.var(ddof=1)
    expected = (y_t - theta * x_t).mean() - (y_c - theta * x_c).mean()
    assert res.absolute.estimate == pytest.approx(expected, rel=1e-9)


def test_cupac_with_model_prediction(rng: np.random.Generator) -> None:
    n = 5000
    feat_c, feat_t = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    w = np.array([1.0, -0.5, 0.3])
    y_c = np.tanh(feat_c @ w) * 3 + rng.normal(0, 1, n)
    y_t = np.tanh(feat_t @ w) * 3 + rng.normal(0, 1, n) + 0.05
    # a "model": least squares fit on independent historical data
    hist = rng.normal(size=(n, 3))
    y_hist = np.tanh(hist @ w) * 3 + rng.normal(0, 1, n)
    coef, *_ = np.linalg.lstsq(np.c_[hist, np.ones(n)], y_hist, rcond=None)
    pred_c, pred_t = np.c_[feat_c, np.ones(n)] @ coef, np.c_[feat_t, np.ones(n)] @ coef
    res = st.cupac_test(
        st.CupedStats.from_arrays(y_c, pred_c), st.CupedStats.from_arrays(y_t, pred_t)
    )
    assert res.method == "cupac"
    assert res.variance_reduction is not None and res.variance_reduction > 0.5
    # Reference: Welch's t-test (scipy) on y - theta (pred - mean pred) with theta the pooled
    # least-squares slope of y on the prediction (CUPED with the prediction as covariate).
    ally, allp = np.concatenate([y_c, y_t]), np.concatenate([pred_c, pred_t])
    theta = np.polyfit(allp, ally, 1)[0]
    adj_c, adj_t = y_c - theta * (pred_c - allp.mean()), y_t - theta * (pred_t - allp.mean())
    ref = sps.ttest_ind(adj_t, adj_c, equal_var=False)
    ref_ci = ref.confidence_interval(0.95)
    ref_se = math.sqrt(adj_c.var(ddof=1) / n + adj_t.var(ddof=1) / n)
    assert res.std_error == pytest.approx(ref_se, rel=1e-9)
    assert res.absolute.estimate == pytest.approx(adj_t.mean() - adj_c.mean(), rel=1e-9)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-7)
    assert res.absolute.low == pytest.approx(ref_ci.low, rel=1e-9)
    assert res.absolute.high == pytest.approx(ref_ci.high, rel=1e-9)
    raw_se2 = y_c.var(ddof=1) / n + y_t.var(ddof=1) / n
    assert res.variance_reduction == pytest.approx(1 - ref_se**2 / raw_se2, rel=1e-9)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_mann_whitney_matches_scipy(rng: np.random.Generator, alternative: str) -> None:
    c = rng.poisson(3, 150).astype(float)  # ties on purpose
    t = rng.poisson(3.4, 170).astype(float)
    res = st.mann_whitney(c, t, alternative=alternative)
    # Reference: scipy.stats.mannwhitneyu(asymptotic, continuity, tie correction).
    ref = sps.mannwhitneyu(t, c, alternative=alternative, method="asymptotic", use_continuity=True)
    assert res.u_statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.prob_superiority == pytest.approx(ref.statistic / (150 * 170))


def test_fieller_when_treatment_mean_is_zero() -> None:
    c = st.proportion_stats(400, 8)
    t = st.proportion_stats(400, 0)
    res = st.ztest_proportions(c, t)
    assert any("Fieller" in n for n in res.notes)
    # Closed form: the Fieller bounds solve (mt - r mc)^2 = z^2 (vt/nt + r^2 vc/nc) for r.
    z = sps.norm.ppf(0.975)
    mc, vc = 0.02, 0.02 * 0.98 / 400
    r_low = res.relative.low + 1
    assert (0.0 - r_low * mc) ** 2 == pytest.approx(z * z * (r_low**2 * vc), rel=1e-9)
    assert res.relative.estimate == -1.0
    assert res.relative.low <= -1.0 <= res.relative.high


def test_compare_variants_multi_arm(rng: np.random.Generator) -> None:
    groups = {
        k: st.MeanStats.from_array(rng.normal(mu, 1, 200))
        for k, mu in [("A", 0), ("B", 0.3), ("C", 0)]
    }
    out = st.compare_variants(groups, "A", st.welch_ttest, alpha=0.01)
    assert set(out) == {"B", "C"}
    assert out["B"].alpha == 0.01
    with pytest.raises(st.StatsInputError, match="control variant"):
        st.compare_variants(groups, "Z", st.welch_ttest)


def test_to_dict_is_json_safe() -> None:
    import json

    res = st.welch_ttest(st.MeanStats(10, 5, 10), st.MeanStats(12, 8, 15), alternative="greater")
    d = res.to_dict()
    assert d["absolute"]["high"] is None  # +inf for a one-sided interval
    json.dumps(d, allow_nan=False)


def test_json_safe_converts_nested_numpy_and_non_finite_values() -> None:
    from abrec.stats.results import json_safe

    value = {
        1: (np.float64(0.5), np.int64(3), np.bool_(True)),
        "arr": np.array([1.0, np.nan, np.inf]),
        "iv": st.Interval(np.float64(0.25), -math.inf, 1.0),
        "s": np.str_("x"),
    }
    assert json_safe(value) == {
        "1": [0.5, 3, True],
        "arr": [1.0, None, None],
        "iv": {"estimate": 0.25, "low": None, "high": 1.0},
        "s": "x",
    }
    out = json_safe(value)
    assert type(out["1"][1]) is int and type(out["1"][2]) is bool and type(out["s"]) is str


@pytest.mark.parametrize(
    ("make", "cols"),
    [
        (lambda a, b: st.MeanStats.from_array(a), 1),
        (st.RatioStats.from_arrays, 2),
        (st.CupedStats.from_arrays, 2),
    ],
)
def test_sufficient_stats_add_like_pooled_data(make: Any, cols: int) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(2, 1, (2, 40)), rng.normal(3, 2, (2, 25))
    got = make(a[0], a[1]) + make(b[0], b[1])
    ref = make(np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]))
    assert type(got) is type(ref)
    for f in dataclasses.fields(ref):
        assert getattr(got, f.name) == pytest.approx(getattr(ref, f.name), rel=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: st.welch_ttest(st.MeanStats(1, 1, 1), st.MeanStats(5, 5, 6)),
        lambda: st.ratio_test(st.RatioStats(1, 1, 1, 1, 1, 1), st.RatioStats(5, 5, 6, 5, 5, 6)),
        lambda: st.cuped_test(st.CupedStats(5, 5, 6, 5, 6, 5), st.CupedStats(1, 1, 1, 1, 1, 1)),
        lambda: st.bayes_ratio(st.RatioStats(1, 1, 1, 1, 1, 1), st.RatioStats(5, 5, 6, 5, 5, 6)),
        lambda: st.sequential_test(st.MeanStats(5, 5, 6), st.MeanStats(0, 0, 0)),
    ],
)
def test_singleton_group_names_both_counts(call: Any) -> None:
    with pytest.raises(st.StatsInputError, match=r"at least 2 units per group, got control=\d"):
        call()
