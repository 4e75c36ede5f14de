"""Always-valid inference under continuous peeking: normal-mixture confidence sequences.

The boundary is the two-sided normal-mixture boundary of Howard et al. (2021), used with a
plug-in variance as the asymptotic confidence sequence of Waudby-Smith et al. (2023); it is the
same statistic as the mixture SPRT of Johari et al. (2017) with mixing variance tau^2 = rho^2
n Var(estimate).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import numpy.typing as npt

from abrec.stats._checks import check_alpha, check_count
from abrec.stats._groups import two_groups
from abrec.stats.errors import NotTestableError, StatsInputError
from abrec.stats.results import Interval, SequentialResult
from abrec.stats.sufficient import MeanStats, RatioStats


def optimal_rho(target_n: int, alpha: float = 0.05) -> float:
    """Mixing parameter that makes the sequence tightest at `target_n` units in total."""
    alpha = check_alpha(alpha)
    target_n = check_count(target_n, "target_n")
    if target_n < 1:
        raise StatsInputError("target_n must be at least 1.")
    la = -2.0 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1.0)) / target_n)


def always_valid_pvalue(
    estimate: npt.ArrayLike, variance: npt.ArrayLike, n: npt.ArrayLike, rho: float
) -> npt.NDArray[np.float64]:
    """Always-valid p-value min(1, 1/Lambda) of H0: effect = 0 (vectorised).

    Args:
        estimate: effect estimate(s); variance: its variance(s) Var(estimate);
        n: units observed so far (the time index); rho: mixing parameter.
    """
    d = np.asarray(estimate, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64) * rho * rho
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lambda = -0.5 * np.log1p(t) + d * d / (2.0 * v) * t / (1.0 + t)
    log_lambda = np.where(v > 0, log_lambda, np.where(d != 0, np.inf, 0.0))
    return np.asarray(np.minimum(1.0, np.exp(-log_lambda)), dtype=np.float64)


def confidence_sequence_radius(
    variance: npt.ArrayLike, n: npt.ArrayLike, rho: float, alpha: float
) -> npt.NDArray[np.float64]:
    """Half-width of the (1 - alpha) confidence sequence at each look (vectorised)."""
    v = np.asarray(variance, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64) * rho * rho
    return np.asarray(
        np.sqrt(v * (1.0 + t) / t * (2.0 * math.log(1.0 / alpha) + np.log1p(t))),
        dtype=np.float64,
    )


def _check_rho(rho: float | None, target_n: int, alpha: float) -> float:
    if rho is None:
        return optimal_rho(target_n, alpha)
    if not isinstance(rho, int | float) or not rho > 0 or not math.isfinite(rho):
        raise StatsInputError(f"rho must be a positive finite number, got {rho!r}.")
    return float(rho)


def _decision(p: float, alpha: float) -> Literal["continue", "reject"]:
    return "reject" if p <= alpha else "continue"


def _sequential(
    control: MeanStats | RatioStats,
    treatment: MeanStats | RatioStats,
    *,
    what: str,
    method: str,
    alpha: float,
    rho: float | None,
    target_n: int,
    metric: str,
) -> SequentialResult:
    """Always-valid result at one look from either kind of sufficient statistics."""
    alpha = check_alpha(alpha)
    r = _check_rho(rho, target_n, alpha)
    c, t = two_groups(control, treatment, what)
    nc, nt = c.n, t.n
    d = t.mean - c.mean
    v = c.var_of_mean + t.var_of_mean
    if v == 0.0:
        raise NotTestableError(
            f"{method}: the metric has zero variance in both groups; "
            "wait for more data or check the metric column."
        )
    n = nc + nt
    p = float(always_valid_pvalue(d, v, n, r))
    rad = float(confidence_sequence_radius(v, n, r, alpha))
    return SequentialResult(
        method=method,
        metric=metric,
        estimate=d,
        ci=Interval(d, d - rad, d + rad),
        p_value=p,
        decision=_decision(p, alpha),
        n_control=nc,
        n_treatment=nt,
        alpha=alpha,
        rho=r,
        control_mean=c.mean,
        treatment_mean=t.mean,
    )


def sequential_test(
    control: MeanStats,
    treatment: MeanStats,
    *,
    alpha: float = 0.05,
    rho: float | None = None,
    target_n: int = 10_000,
    metric: str = "",
) -> SequentialResult:
    """Always-valid CI and p-value for treatment mean - control mean at one look.

    Fix `rho` (or `target_n`, the total units at which the sequence should be tightest)
    before the experiment starts; changing it after peeking voids the guarantee.
    """
    return _sequential(
        control,
        treatment,
        what="sequential_test",
        method="mixture-sequential",
        alpha=alpha,
        rho=rho,
        target_n=target_n,
        metric=metric,
    )


def sequential_ratio_test(
    control: RatioStats,
    treatment: RatioStats,
    *,
    alpha: float = 0.05,
    rho: float | None = None,
    target_n: int = 10_000,
    metric: str = "",
) -> SequentialResult:
    """Always-valid inference on a difference of ratio-of-sums metrics (delta-method variance)."""
    return _sequential(
        control,
        treatment,
        what="sequential_ratio_test",
        method="mixture-sequential-ratio",
        alpha=alpha,
        rho=rho,
        target_n=target_n,
        metric=metric,
    )


class SequentialMonitor:
    """Successive looks at a running experiment: running-min p-value, intersected CIs."""

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        rho: float | None = None,
        target_n: int = 10_000,
        metric: str = "",
    ) -> None:
        self.alpha = check_alpha(alpha)
        self.rho = _check_rho(rho, target_n, self.alpha)
        self.metric = metric
        self.looks = 0
        self._p = 1.0
        self._low = -math.inf
        self._high = math.inf
        self._n = 0
        self.last: SequentialResult | None = None
        self.last_look: SequentialResult | None = None  # the latest look on its own

    def update(
        self, control: MeanStats | RatioStats, treatment: MeanStats | RatioStats
    ) -> SequentialResult:
        """Add a look with the cumulative statistics so far; return the running result."""
        n = control.n + treatment.n
        if n < self._n:
            raise StatsInputError(
                f"looks must use cumulative data: total units went from {self._n} to {n}."
            )
        if isinstance(control, RatioStats) and isinstance(treatment, RatioStats):
            now = sequential_ratio_test(
                control, treatment, alpha=self.alpha, rho=self.rho, metric=self.metric
            )
        elif isinstance(control, MeanStats) and isinstance(treatment, MeanStats):
            now = sequential_test(
                control, treatment, alpha=self.alpha, rho=self.rho, metric=self.metric
            )
        else:
            raise StatsInputError("control and treatment must both be MeanStats or RatioStats.")
        self._n = n
        self.looks += 1
        self.last_look = now
        self._p = min(self._p, now.p_value)
        self._low = max(self._low, now.ci.low)
        self._high = min(self._high, now.ci.high)
        notes: tuple[str, ...] = ()
        low, high = self._low, self._high
        if low > high:  # only possible when the model is badly misspecified (drift)
            notes = ("confidence sequences stopped overlapping: the effect is not stationary",)
            low, high = min(low, high), max(low, high)
        self.last = dataclasses.replace(
            now,
            ci=Interval(now.estimate, low, high),
            p_value=self._p,
            decision=_decision(self._p, self.alpha),
            looks=self.looks,
            notes=notes,
        )
        return self.last
