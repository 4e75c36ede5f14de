"""Fixed-horizon frequentist tests: Welch t, two-proportion z, delta-method ratio, CUPED/CUPAC,
Mann-Whitney U."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats as sps

from abrec.stats._checks import (
    Alternative,
    as_1d,
    check_alpha,
    check_alternative,
    check_min_units,
    z_or_t_quantile,
)
from abrec.stats._groups import Moments, two_groups
from abrec.stats.errors import NotTestableError, StatsInputError
from abrec.stats.results import EffectResult, Interval, MannWhitneyResult
from abrec.stats.sufficient import CupedStats, MeanStats, RatioStats

R = TypeVar("R")


def _welch_df(a: float, b: float, nc: int, nt: int) -> float:
    """Welch-Satterthwaite degrees of freedom for variances of means `a` and `b`."""
    denom = a * a / (nc - 1) + b * b / (nt - 1)
    if denom == 0.0:
        return float(nc + nt - 2)
    return (a + b) ** 2 / denom


def _p_value(stat: float, alternative: Alternative, df: float | None) -> float:
    def cdf(x: float) -> float:
        return float(special.ndtr(x) if df is None else special.stdtr(df, x))

    if alternative == "two-sided":
        return min(1.0, 2.0 * cdf(-abs(stat)))
    if alternative == "greater":
        return cdf(-stat)
    return cdf(stat)


def _bounds(
    est: float, se: float, alpha: float, alternative: Alternative, df: float | None
) -> tuple[float, float]:
    if alternative == "two-sided":
        q = z_or_t_quantile(1.0 - alpha / 2.0, df)
        return est - q * se, est + q * se
    q = z_or_t_quantile(1.0 - alpha, df)
    if alternative == "greater":
        return est - q * se, math.inf
    return -math.inf, est + q * se


def relative_interval(
    mc: float,
    vc: float,
    nc: int,
    mt: float,
    vt: float,
    nt: int,
    *,
    alpha: float,
    alternative: Alternative,
    use_t: bool,
) -> tuple[Interval, str | None]:
    """CI for treatment/control - 1: log-scale delta method, Fieller when a mean is <= 0.

    Args:
        mc, mt: group means; vc, vt: per-unit variances; nc, nt: group sizes.
    Returns:
        The interval and a note saying which method was used when it was not the default.
    """
    if mc > 0 and mt > 0:
        a, b = vc / (nc * mc * mc), vt / (nt * mt * mt)
        se_log = math.sqrt(a + b)
        df = _welch_df(a, b, nc, nt) if use_t else None
        ratio = mt / mc
        lo, hi = _bounds(math.log(ratio), se_log, alpha, alternative, df)
        return Interval(ratio - 1.0, math.exp(lo) - 1.0, math.exp(hi) - 1.0), None
    if mc == 0:
        return (
            Interval(math.nan, -math.inf, math.inf),
            "relative effect undefined: the control mean is 0",
        )
    # Fieller's theorem for the ratio of two independent means.
    a_, b_ = vc / nc, vt / nt
    df = _welch_df(a_, b_, nc, nt) if use_t else None
    level = alpha if alternative == "two-sided" else 2.0 * alpha
    q = z_or_t_quantile(1.0 - level / 2.0, df)
    qa = mc * mc - q * q * a_
    qb = -2.0 * mt * mc
    qc = mt * mt - q * q * b_
    ratio = mt / mc
    if qa <= 0:
        return (
            Interval(ratio - 1.0, -math.inf, math.inf),
            "relative CI unbounded (Fieller): the control mean is not distinguishable from 0",
        )
    disc = max(qb * qb - 4.0 * qa * qc, 0.0)
    r1 = (-qb - math.sqrt(disc)) / (2.0 * qa)
    r2 = (-qb + math.sqrt(disc)) / (2.0 * qa)
    lo, hi = min(r1, r2) - 1.0, max(r1, r2) - 1.0
    if alternative == "greater":
        hi = math.inf
    elif alternative == "less":
        lo = -math.inf
    return Interval(ratio - 1.0, lo, hi), "relative CI by Fieller's method (a mean is <= 0)"


def _effect(
    *,
    method: str,
    metric: str,
    c: Moments,
    t: Moments,
    alpha: float,
    alternative: str,
    use_t: bool,
    test_se: float | None = None,
    variance_reduction: float | None = None,
    notes: tuple[str, ...] = (),
) -> EffectResult:
    """Difference in means with CI and p-value; callers have checked both groups have 2+ units."""
    alpha = check_alpha(alpha)
    alt = check_alternative(alternative)
    (mc, vc, nc), (mt, vt, nt) = c, t
    a, b = c.var_of_mean, t.var_of_mean
    se = math.sqrt(a + b)
    if se == 0.0 and (test_se is None or test_se == 0.0):
        raise NotTestableError(
            f"{method}: the metric{' ' + repr(metric) if metric else ''} has zero variance in "
            "both groups (every unit has the same value), so no test is possible; "
            "check that the column holds per-unit values."
        )
    df = _welch_df(a, b, nc, nt) if use_t else None
    diff = mt - mc
    stat_se = se if test_se is None else test_se
    stat = diff / stat_se if stat_se > 0 else math.copysign(math.inf, diff) if diff else 0.0
    p = _p_value(stat, alt, df)
    lo, hi = _bounds(diff, se, alpha, alt, df)
    rel, note = relative_interval(mc, vc, nc, mt, vt, nt, alpha=alpha, alternative=alt, use_t=use_t)
    return EffectResult(
        method=method,
        metric=metric,
        control_mean=mc,
        treatment_mean=mt,
        n_control=nc,
        n_treatment=nt,
        absolute=Interval(diff, lo, hi),
        relative=rel,
        p_value=p,
        alpha=alpha,
        alternative=alt,
        variance_reduction=variance_reduction,
        notes=notes + ((note,) if note else ()),
        statistic=stat,
        std_error=se,
        df=df,
    )


def welch_ttest(
    control: MeanStats,
    treatment: MeanStats,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    metric: str = "",
) -> EffectResult:
    """Welch's unequal-variance t-test for a difference in means."""
    c, t = two_groups(control, treatment, "welch_ttest")
    return _effect(
        method="welch-t", metric=metric, c=c, t=t, alpha=alpha, alternative=alternative, use_t=True
    )


def _check_binary(s: MeanStats, name: str) -> None:
    if abs(s.sum_sq - s.sum) > 1e-9 * max(1.0, abs(s.sum)) or s.sum > s.n or s.sum < 0:
        raise StatsInputError(
            f"{name} is not 0/1 data (sum_sq must equal sum and 0 <= sum <= n); "
            "use proportion_stats(n, successes) or welch_ttest for non-binary metrics."
        )


def ztest_proportions(
    control: MeanStats,
    treatment: MeanStats,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    metric: str = "",
    pooled: bool = True,
) -> EffectResult:
    """Two-proportion z-test; pooled SE for the p-value (default), unpooled (Wald) SE for CIs."""
    _check_binary(control, "control")
    _check_binary(treatment, "treatment")
    nc, nt = control.n, treatment.n
    check_min_units(nc, nt, "ztest_proportions")
    pc, pt = control.sum / nc, treatment.sum / nt
    test_se = None
    if pooled:
        pp = (control.sum + treatment.sum) / (nc + nt)
        test_se = math.sqrt(pp * (1.0 - pp) * (1.0 / nc + 1.0 / nt))
    small = min(control.sum, nc - control.sum, treatment.sum, nt - treatment.sum)
    notes: tuple[str, ...] = ()
    if small < 10:
        notes = (
            f"only {small:g} successes or failures in a group: the normal approximation is "
            "rough; prefer bayes_proportions or collect more data",
        )
    # Bernoulli variance with ddof=0, as in the classical z-test.
    return _effect(
        method="z-test-proportions",
        metric=metric,
        c=Moments(pc, pc * (1.0 - pc), nc),
        t=Moments(pt, pt * (1.0 - pt), nt),
        alpha=alpha,
        alternative=alternative,
        use_t=False,
        test_se=test_se,
        notes=notes,
    )


def ratio_test(
    control: RatioStats,
    treatment: RatioStats,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    metric: str = "",
    use_t: bool = False,
) -> EffectResult:
    """Difference of two ratio-of-sums metrics with delta-method variances (Deng et al. 2018)."""
    c, t = two_groups(control, treatment, "ratio_test")
    return _effect(
        method="delta-ratio",
        metric=metric,
        c=c,
        t=t,
        alpha=alpha,
        alternative=alternative,
        use_t=use_t,
    )


def cuped_test(
    control: CupedStats,
    treatment: CupedStats,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    metric: str = "",
    method: str = "cuped",
) -> EffectResult:
    """CUPED (Deng et al. 2013): Welch t-test on y - theta (x - mean x), theta pooled over groups.

    Means reported are covariate-adjusted; `variance_reduction` is
    1 - Var(adjusted difference) / Var(unadjusted difference).
    """
    check_min_units(control.n, treatment.n, method)
    total = control + treatment
    var_x = total.x.var
    notes: tuple[str, ...] = ()
    if var_x == 0.0:
        theta = 0.0
        notes = ("the covariate is constant, so no adjustment was made",)
    else:
        theta = total.cov_xy / var_x
    mean_x = total.x.mean

    def adjusted(s: CupedStats) -> tuple[Moments, float]:
        vy, vx, cxy = s.y.var, s.x.var, s.cov_xy
        v_adj = max(vy + theta * theta * vx - 2.0 * theta * cxy, 0.0)
        return Moments(s.y.mean - theta * (s.x.mean - mean_x), v_adj, s.n), vy

    c, vc_raw = adjusted(control)
    t, vt_raw = adjusted(treatment)
    raw = vc_raw / control.n + vt_raw / treatment.n
    adj = c.var_of_mean + t.var_of_mean
    reduction = 1.0 - adj / raw if raw > 0 else 0.0
    return _effect(
        method=method,
        metric=metric,
        c=c,
        t=t,
        alpha=alpha,
        alternative=alternative,
        use_t=True,
        variance_reduction=reduction,
        notes=notes,
    )


def cupac_test(
    control: CupedStats,
    treatment: CupedStats,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    metric: str = "",
) -> EffectResult:
    """CUPAC: CUPED with a model prediction of y (from pre-experiment features) as covariate.

    Build the stats with `CupedStats.from_arrays(y, prediction)`; the prediction must not
    depend on the treatment assignment.
    """
    return cuped_test(
        control, treatment, alpha=alpha, alternative=alternative, metric=metric, method="cupac"
    )


def mann_whitney(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    continuity: bool = True,
    metric: str = "",
) -> MannWhitneyResult:
    """Mann-Whitney U test of treatment vs control (normal approximation, tie-corrected).

    `greater` means treatment tends to be larger. `prob_superiority` is
    P(T > C) + P(T = C) / 2 = U_treatment / (n_c n_t).
    """
    alpha = check_alpha(alpha)
    alt = check_alternative(alternative)
    c = as_1d(control, "control")
    t = as_1d(treatment, "treatment")
    nc, nt = c.size, t.size
    allv = np.concatenate([t, c])
    ranks = sps.rankdata(allv)
    u_t = float(ranks[:nt].sum()) - nt * (nt + 1) / 2.0
    n = nc + nt
    _, counts = np.unique(allv, return_counts=True)
    tie = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    var_u = nc * nt / 12.0 * ((n + 1) - tie / (n * (n - 1)))
    if var_u <= 0:
        raise NotTestableError(
            "mann_whitney: all values are identical in both groups, so ranks carry no information."
        )
    mu = nc * nt / 2.0
    sd = math.sqrt(var_u)
    cc = 0.5 if continuity else 0.0
    if alt == "two-sided":
        u = max(u_t, nc * nt - u_t)
        z = (u - mu - cc) / sd
        p = min(1.0, 2.0 * float(sps.norm.sf(z)))
        z = math.copysign(z, u_t - mu)
    elif alt == "greater":
        z = (u_t - mu - cc) / sd
        p = float(sps.norm.sf(z))
    else:
        z = (u_t - mu + cc) / sd
        p = float(sps.norm.cdf(z))
    return MannWhitneyResult(
        metric=metric,
        u_statistic=u_t,
        p_value=p,
        prob_superiority=u_t / (nc * nt),
        n_control=nc,
        n_treatment=nt,
        alpha=alpha,
        alternative=alt,
        z=z,
    )


def compare_variants(
    groups: Mapping[str, Any],
    control: str,
    test: Callable[..., R],
    **kwargs: Any,
) -> dict[str, R]:
    """Run `test(groups[control], groups[v], **kwargs)` for every variant v != control."""
    if control not in groups:
        raise StatsInputError(
            f"control variant {control!r} not found; variants are {sorted(groups)}."
        )
    if len(groups) < 2:
        raise StatsInputError("an experiment needs a control and at least one treatment.")
    return {v: test(groups[control], s, **kwargs) for v, s in groups.items() if v != control}
