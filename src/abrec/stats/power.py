"""Power analysis (normal approximation) for proportions and means with unequal allocation.

`ratio` is n_treatment / n_control. Effects are absolute unless `relative=True`.
Proportions use the pooled-variance z-test (pooled SE under H0, unpooled under H1).
"""

from __future__ import annotations

import math

from scipy import optimize
from scipy import stats as sps

from abrec.stats._checks import Alternative, check_alpha, check_alternative
from abrec.stats.errors import StatsInputError
from abrec.stats.results import SampleSizeResult

_MAX_N = 10**12


def _crit(alpha: float, alternative: Alternative) -> float:
    return float(sps.norm.ppf(1.0 - (alpha / 2.0 if alternative == "two-sided" else alpha)))


def _power_z(delta: float, se0: float, se1: float, alpha: float, alt: Alternative) -> float:
    z = _crit(alpha, alt)
    up = float(sps.norm.cdf((delta - z * se0) / se1))
    down = float(sps.norm.cdf((-delta - z * se0) / se1))
    if alt == "greater":
        return up
    if alt == "less":
        return down
    return up + down


def _check_n(n: float, name: str) -> float:
    if not (isinstance(n, int | float) and math.isfinite(n) and n >= 2):
        raise StatsInputError(f"{name} must be a number >= 2, got {n!r}.")
    return float(n)


def _check_pos(x: float, name: str) -> float:
    if not (isinstance(x, int | float) and math.isfinite(x) and x > 0):
        raise StatsInputError(f"{name} must be a positive finite number, got {x!r}.")
    return float(x)


def _check_power(power: float) -> float:
    return check_alpha(power, "power")


def _treatment_rate(baseline: float, mde: float, relative: bool) -> float:
    if not (isinstance(baseline, int | float) and 0.0 < baseline < 1.0):
        raise StatsInputError(f"baseline must be a rate strictly between 0 and 1, got {baseline}.")
    pt = baseline * (1.0 + mde) if relative else baseline + mde
    if not 0.0 < pt < 1.0:
        raise StatsInputError(
            f"baseline {baseline} with effect {mde} gives a treatment rate of {pt}, "
            "outside (0, 1); use a smaller effect."
        )
    if pt == baseline:
        raise StatsInputError("the effect must be non-zero.")
    return pt


def power_means(
    mde: float,
    std: float,
    n_control: float,
    n_treatment: float,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    std_treatment: float | None = None,
) -> float:
    """Power of the two-sample z-test to detect an absolute mean difference `mde`."""
    alpha, alt = check_alpha(alpha), check_alternative(alternative)
    sc = _check_pos(std, "std")
    st = sc if std_treatment is None else _check_pos(std_treatment, "std_treatment")
    nc, nt = _check_n(n_control, "n_control"), _check_n(n_treatment, "n_treatment")
    se = math.sqrt(sc * sc / nc + st * st / nt)
    return _power_z(float(mde), se, se, alpha, alt)


def power_proportions(
    baseline: float,
    mde: float,
    n_control: float,
    n_treatment: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> float:
    """Power of the pooled two-proportion z-test for control rate `baseline` and effect `mde`."""
    alpha, alt = check_alpha(alpha), check_alternative(alternative)
    nc, nt = _check_n(n_control, "n_control"), _check_n(n_treatment, "n_treatment")
    pc = float(baseline)
    pt = _treatment_rate(pc, mde, relative)
    pbar = (nc * pc + nt * pt) / (nc + nt)
    se0 = math.sqrt(pbar * (1.0 - pbar) * (1.0 / nc + 1.0 / nt))
    se1 = math.sqrt(pc * (1.0 - pc) / nc + pt * (1.0 - pt) / nt)
    return _power_z(pt - pc, se0, se1, alpha, alt)


def _solve_n(power_at: object, target: float, ratio: float) -> tuple[int, int]:
    """Smallest control size n (treatment ceil(ratio n)) whose power reaches `target`."""
    assert callable(power_at)

    def f(nc: float) -> float:
        return float(power_at(nc, ratio * nc)) - target

    lo, hi = 2.0, 4.0
    if f(lo) >= 0:
        return 2, max(2, math.ceil(ratio * 2))
    while f(hi) < 0:
        hi *= 2.0
        if hi > _MAX_N:
            raise StatsInputError(
                "the required sample size exceeds 10^12 units; the effect is too small to detect."
            )
    nc = float(optimize.brentq(f, lo, hi, xtol=1e-6))
    n_c = math.ceil(nc - 1e-6)
    while f(n_c) < 0:
        n_c += 1
    return n_c, max(2, math.ceil(ratio * n_c - 1e-9))


def _check_ratio(ratio: float) -> float:
    return _check_pos(ratio, "ratio")


def sample_size_means(
    mde: float,
    std: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
    std_treatment: float | None = None,
) -> SampleSizeResult:
    """Units per group to detect an absolute mean difference `mde` with the given power."""
    alpha, power, ratio = check_alpha(alpha), _check_power(power), _check_ratio(ratio)
    check_alternative(alternative)
    if mde == 0:
        raise StatsInputError("mde must be non-zero.")

    def pw(nc: float, nt: float) -> float:
        return power_means(
            mde, std, nc, nt, alpha=alpha, alternative=alternative, std_treatment=std_treatment
        )

    nc, nt = _solve_n(pw, power, ratio)
    return SampleSizeResult(nc, nt, nc + nt, float(mde), alpha, power, ratio, alternative)


def sample_size_proportions(
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
) -> SampleSizeResult:
    """Units per group to detect `mde` on a conversion rate `baseline` with the given power."""
    alpha, power, ratio = check_alpha(alpha), _check_power(power), _check_ratio(ratio)
    check_alternative(alternative)
    pt = _treatment_rate(baseline, mde, relative)

    def pw(nc: float, nt: float) -> float:
        return power_proportions(
            baseline, pt - baseline, nc, nt, alpha=alpha, alternative=alternative
        )

    nc, nt = _solve_n(pw, power, ratio)
    return SampleSizeResult(nc, nt, nc + nt, pt - baseline, alpha, power, ratio, alternative)


def mde_means(
    std: float,
    n_control: float,
    n_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    std_treatment: float | None = None,
) -> float:
    """Smallest absolute mean difference detectable with the given power (a positive number)."""
    alpha, power = check_alpha(alpha), _check_power(power)
    alt = check_alternative(alternative)
    sign = -1.0 if alt == "less" else 1.0
    sc = _check_pos(std, "std")
    st = sc if std_treatment is None else _check_pos(std_treatment, "std_treatment")
    se = math.sqrt(
        sc * sc / _check_n(n_control, "n_control") + st * st / _check_n(n_treatment, "n_treatment")
    )

    def f(d: float) -> float:
        return _power_z(sign * d, se, se, alpha, alt) - power

    if f(0.0) >= 0:
        raise StatsInputError("power must exceed alpha (the power at zero effect).")
    return float(optimize.brentq(f, 0.0, 50.0 * se, xtol=1e-12 * se))


def mde_proportions(
    baseline: float,
    n_control: float,
    n_treatment: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
) -> float:
    """Smallest effect on `baseline` detectable with the given power (increase, or decrease for
    `alternative="less"`, returned as a positive number)."""
    alpha, power = check_alpha(alpha), _check_power(power)
    alt = check_alternative(alternative)
    sign = -1.0 if alt == "less" else 1.0
    nc, nt = _check_n(n_control, "n_control"), _check_n(n_treatment, "n_treatment")
    _treatment_rate(baseline, 0.5 * sign * min(baseline, 1 - baseline), False)
    room = (baseline if sign < 0 else 1.0 - baseline) * (1.0 - 1e-9)

    def f(d: float) -> float:
        return power_proportions(baseline, sign * d, nc, nt, alpha=alpha, alternative=alt) - power

    if f(room) < 0:
        raise StatsInputError(
            "no effect within the rate's range reaches that power; increase the sample size."
        )
    d = float(optimize.brentq(f, room * 1e-9, room, xtol=1e-12))
    return d / baseline if relative else d
