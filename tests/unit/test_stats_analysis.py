"""Whole-experiment analysis against independent references computed from per-unit data.

The references are scipy/statsmodels (Welch, two-proportion z-test, Holm, BH, chi-square) or
re-derived here from the per-unit arrays (delta-method ratio, CUPED, log-scale relative CIs),
never the abrec functions under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

import abrec.stats as st
from abrec.stats import analysis as an

Arr = np.ndarray


@pytest.fixture(scope="module")
def cols() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    n = 700_000  # more than two aggregation chunks
    return {
        "conv": rng.binomial(1, 0.1, n).astype(float),
        "rev": rng.gamma(2, 5, n),
        "pre": rng.gamma(2, 5, n),
        "clicks": rng.poisson(1, n).astype(float),
        "exp": rng.poisson(5, n) + 1.0,
        "variant": rng.choice(np.array([3, 7, 9]), n),
    }


def test_aggregate_matches_per_group_arrays(cols: dict[str, np.ndarray]) -> None:
    metrics = [
        an.MetricSpec.parse("conv:proportion"),
        an.MetricSpec.parse("rev:mean", covariate="pre"),
        an.MetricSpec.parse("clicks/exp:ratio"),
    ]
    labels, counts, stats = an.aggregate(cols, cols["variant"], metrics)
    assert labels == ["3", "7", "9"]
    for i, g in enumerate([3, 7, 9]):
        m = cols["variant"] == g
        assert counts[i] == m.sum()
        ref_c = st.MeanStats.from_array(cols["conv"][m])
        ref_r = st.CupedStats.from_arrays(cols["rev"][m], cols["pre"][m])
        ref_q = st.RatioStats.from_arrays(cols["clicks"][m], cols["exp"][m])
        for got, ref in (
            (stats["conv"][i], ref_c),
            (stats["rev"][i], ref_r),
            (stats["clicks/exp"][i], ref_q),
        ):
            assert type(got) is type(ref)
            for f in ref.__dataclass_fields__:
                assert getattr(got, f) == pytest.approx(getattr(ref, f), rel=1e-10)


# ------------------------------------------------------------------ independent references
def _log_rel_ci(mc: float, vc: float, nc: int, mt: float, vt: float, nt: int,
                use_t: bool) -> tuple[float, float, float]:  # fmt: skip
    """treatment/control - 1 with a log-scale delta-method CI (vc, vt: per-unit variances).

    With ``use_t``, a t quantile with Welch-Satterthwaite df of the log-scale variances.
    """
    a, b = vc / (nc * mc**2), vt / (nt * mt**2)
    df = (a + b) ** 2 / (a**2 / (nc - 1) + b**2 / (nt - 1))
    q = sps.t.ppf(0.975, df) if use_t else sps.norm.ppf(0.975)
    r, se = mt / mc, math.sqrt(a + b)
    return r - 1, r * math.exp(-q * se) - 1, r * math.exp(q * se) - 1


def ref_welch(c: Arr, t: Arr) -> dict[str, float]:
    """scipy's Welch test (p, CI of the difference) and the log-delta relative CI."""
    res = sps.ttest_ind(t, c, equal_var=False)
    ci = res.confidence_interval(0.95)
    vc, vt = c.var(ddof=1), t.var(ddof=1)
    rel = _log_rel_ci(c.mean(), vc, c.size, t.mean(), vt, t.size, True)
    diff = t.mean() - c.mean()
    return dict(p=res.pvalue, est=diff, low=ci.low, high=ci.high, rel=rel[0], rel_low=rel[1],
                rel_high=rel[2])  # fmt: skip


def ref_proportions(c: Arr, t: Arr) -> dict[str, float]:
    """statsmodels: pooled z-test p-value, Wald CI of the difference."""
    count, nobs = np.array([t.sum(), c.sum()]), np.array([t.size, c.size])
    _, p = proportions_ztest(count, nobs)
    low, high = confint_proportions_2indep(
        count[0], nobs[0], count[1], nobs[1], method="wald", compare="diff"
    )
    pc, pt = c.mean(), t.mean()
    rel = _log_rel_ci(pc, pc * (1 - pc), c.size, pt, pt * (1 - pt), t.size, False)
    return dict(p=p, est=pt - pc, low=low, high=high, rel=rel[0], rel_low=rel[1],
                rel_high=rel[2])  # fmt: skip


def ref_ratio(cy: Arr, cd: Arr, ty: Arr, td: Arr) -> dict[str, float]:
    """Delta method for a ratio of sums re-derived from the per-unit arrays (z test)."""

    def moments(y: Arr, d: Arr) -> tuple[float, float, int]:
        r = y.sum() / d.sum()
        cov = np.cov(y, d, ddof=1)  # [[var y, cov], [cov, var d]]
        unit_var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / d.mean() ** 2
        return r, unit_var, y.size

    (rc, vc, nc), (rt, vt, nt) = moments(cy, cd), moments(ty, td)
    se = math.sqrt(vc / nc + vt / nt)
    diff = rt - rc
    q = sps.norm.ppf(0.975)
    rel = _log_rel_ci(rc, vc, nc, rt, vt, nt, False)
    return dict(p=2 * sps.norm.sf(abs(diff / se)), est=diff, low=diff - q * se,
                high=diff + q * se, rel=rel[0], rel_low=rel[1], rel_high=rel[2])  # fmt: skip


def ref_cuped(cy: Arr, cx: Arr, ty: Arr, tx: Arr) -> dict[str, float]:
    """CUPED: theta from both groups pooled, then scipy's Welch test on the adjusted values."""
    x, y = np.concatenate([cx, tx]), np.concatenate([cy, ty])
    theta = np.cov(x, y, ddof=1)[0, 1] / x.var(ddof=1)
    ca, ta = cy - theta * (cx - x.mean()), ty - theta * (tx - x.mean())
    out = ref_welch(ca, ta)
    raw = cy.var(ddof=1) / cy.size + ty.var(ddof=1) / ty.size
    adj = ca.var(ddof=1) / ca.size + ta.var(ddof=1) / ta.size
    return {**out, "vr": 1 - adj / raw}


def _check(got: st.EffectResult, ref: dict[str, float]) -> None:
    pairs = {
        "p": got.p_value, "est": got.absolute.estimate, "low": got.absolute.low,
        "high": got.absolute.high, "rel": got.relative.estimate, "rel_low": got.relative.low,
        "rel_high": got.relative.high, "vr": got.variance_reduction,
    }  # fmt: skip
    for key, value in ref.items():
        assert pairs[key] == pytest.approx(value, rel=1e-7, abs=1e-12), (got.metric, key)


@pytest.fixture(scope="module")
def units() -> dict[str, Arr]:
    """Per-unit data, unequal group sizes and variances; numerator correlated with denominator."""
    rng = np.random.default_rng(5)
    sizes = {"ctl": 3000, "b": 1200, "c": 1800}
    variant = np.repeat(np.array(list(sizes)), list(sizes.values()))
    rng.shuffle(variant)
    n = variant.size
    is_b, is_c = variant == "b", variant == "c"
    exposures = rng.poisson(np.where(is_b, 9.0, 6.0)) + 1.0
    pre = rng.gamma(2, 5, n)
    return {
        "variant": variant,
        "conv": rng.binomial(1, np.where(is_b, 0.14, 0.10)).astype(float),
        # heteroscedastic: Welch and pooled variances differ clearly
        "rev": 0.8 * pre + rng.normal(np.where(is_c, 1.0, 0.0), np.where(is_b, 12.0, 4.0)),
        "pre": pre,
        "exposures": exposures,
        "clicks": rng.binomial(exposures.astype(int), np.where(is_c, 0.13, 0.10)).astype(float),
    }


def test_analyze_experiment_against_references(units: dict[str, Arr]) -> None:
    metrics = [
        an.MetricSpec.parse("conv:proportion"),
        an.MetricSpec.parse("rev:mean"),
        an.MetricSpec.parse("clicks/exposures:ratio"),
        an.MetricSpec("rev_cuped", "mean", "rev", covariate="pre"),
    ]
    weights = {"ctl": 0.5, "b": 0.2, "c": 0.3}
    res = st.analyze_experiment(
        units, units["variant"], control="ctl", metrics=metrics, weights=weights
    )
    v = units["variant"]
    assert [(c.metric, c.variant) for c in res.comparisons] == [
        (m, t) for m in ("conv", "rev", "clicks/exposures", "rev_cuped") for t in ("b", "c")
    ]
    for comp in res.comparisons:
        c, t = v == "ctl", v == comp.variant
        got = comp.result
        assert isinstance(got, st.EffectResult)
        if comp.metric == "conv":
            assert got.method == "z-test-proportions"
            ref = ref_proportions(units["conv"][c], units["conv"][t])
        elif comp.metric == "rev":
            assert got.method == "welch-t"
            ref = ref_welch(units["rev"][c], units["rev"][t])
        elif comp.metric == "rev_cuped":
            assert got.method == "cuped"
            ref = ref_cuped(units["rev"][c], units["pre"][c], units["rev"][t], units["pre"][t])
        else:
            assert got.method == "delta-ratio"
            ref = ref_ratio(
                units["clicks"][c], units["exposures"][c], units["clicks"][t],
                units["exposures"][t],
            )  # fmt: skip
        _check(got, ref)
        assert comp.p_value == got.p_value
    # multiplicity over the whole family, in comparison order; Holm decides `significant`
    ps = np.array([c.p_value for c in res.comparisons])
    holm = multipletests(ps, method="holm")[1]
    bh = multipletests(ps, method="fdr_bh")[1]
    assert not np.allclose(holm, bh)  # the data separate the two corrections
    assert [c.p_value_holm for c in res.comparisons] == pytest.approx(holm, rel=1e-12)
    assert [c.p_value_bh for c in res.comparisons] == pytest.approx(bh, rel=1e-12)
    assert [c.significant for c in res.comparisons] == list(holm < 0.05)
    assert any(c.significant for c in res.comparisons)
    assert not all(c.significant for c in res.comparisons)
    # SRM: chi-square of the unit counts against the weights (labels sorted: b, c, ctl)
    counts = [int((v == g).sum()) for g in ("b", "c", "ctl")]
    expected = np.array([weights[g] for g in ("b", "c", "ctl")]) * sum(counts)
    chi2, p = sps.chisquare(counts, f_exp=expected)
    assert res.srm.chi2 == pytest.approx(chi2, rel=1e-12)
    assert res.srm.p_value == pytest.approx(p, rel=1e-9)
    assert not res.srm.mismatch and res.srm.threshold == st.SRM_THRESHOLD
    # raw means per variant
    for s in res.variants:
        m = v == s.variant
        assert s.n == m.sum()
        assert s.means["rev"] == pytest.approx(units["rev"][m].mean(), rel=1e-12)
        ratio = units["clicks"][m].sum() / units["exposures"][m].sum()
        assert s.means["clicks/exposures"] == pytest.approx(ratio, rel=1e-12)
    assert res.to_dict()["comparisons"][0]["result"]["method"] == "z-test-proportions"


def test_srm_alarm_against_chisquare(units: dict[str, Arr]) -> None:
    weights = {"ctl": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    res = st.analyze_experiment(
        units, units["variant"], control="ctl", metrics=[an.MetricSpec.parse("rev:mean")],
        weights=weights,
    )  # fmt: skip
    _, p = sps.chisquare([1200, 1800, 3000])
    assert res.srm.p_value == pytest.approx(p, rel=1e-6, abs=1e-300)
    assert res.srm.mismatch is bool(p < 0.001) is True
    assert any("sample-ratio mismatch" in n for n in res.notes)


def test_analyze_bad_input() -> None:
    cols = {"y": np.array([1.0, 2.0, np.nan, 4.0])}
    with pytest.raises(st.StatsInputError, match="missing"):
        st.analyze_experiment(
            cols,
            np.array(["A", "B", "A", "B"]),
            control="A",
            metrics=[an.MetricSpec.parse("y:mean")],
        )
    with pytest.raises(st.StatsInputError, match="one variant"):
        st.analyze_experiment(
            {"y": np.arange(4.0)},
            np.array(["A"] * 4),
            control="A",
            metrics=[an.MetricSpec.parse("y:mean")],
        )
    with pytest.raises(st.StatsInputError, match="weights are missing"):
        st.analyze_experiment(
            {"y": np.arange(4.0)},
            np.array(["A", "B"] * 2),
            control="A",
            metrics=[an.MetricSpec.parse("y:mean")],
            weights={"A": 1.0},
        )
    with pytest.raises(st.StatsInputError, match="NUMERATOR/DENOMINATOR"):
        an.MetricSpec.parse("clicks:ratio")
