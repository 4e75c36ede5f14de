"""Per-arm values of a bandit experiment: naive means versus IPS and Hájek estimates.

Under adaptive allocation the per-arm sample mean is biased (an arm that looks bad by chance
gets less traffic, so its unlucky start is never diluted). Weighting each unit by the inverse
of its *logged* assignment probability p_u removes that bias:

- IPS (Horvitz–Thompson): V_a = (1/N) Σ_u 1[A_u = a] Y_u / p_u, N = all units;
- Hájek (self-normalised): V_a = Σ_u 1[A_u = a] Y_u / p_u / Σ_u 1[A_u = a] / p_u.

Confidence intervals are percentile bootstraps over units (`abrec.stats.bootstrap`), resampling
(arm, reward, probability) rows jointly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from abrec.bandit.settings import BanditSettings
from abrec.bandit.thompson import in_burn_in, prob_best, thompson_weights
from abrec.errors import DataError
from abrec.stats.bootstrap import bootstrap
from abrec.stats.results import Interval, ToDictMixin

FloatArray = npt.NDArray[np.float64]
Arm = str | int

#: Naive and Hájek intervals need this many units in the arm: below it a bootstrap resample
#: holds none of them often enough (probability ~ exp(-n) each) to make the ratio undefined.
MIN_CI_UNITS = 30

NOTE = (
    "Bandit allocation is adaptive: traffic follows the arms' observed results, so the naive "
    "per-arm means are biased (an arm that starts unluckily gets less traffic and its low "
    "estimate is never diluted; the bias is negative for the worse arms) and naive arm "
    "comparisons are not valid A/B tests (Nie et al. 2018, 'Why adaptively collected data "
    "have negative bias and how to correct for it', AISTATS; Hadad et al. 2021, 'Confidence "
    "intervals for policy evaluation in adaptive experiments', PNAS). The IPS "
    "(Horvitz–Thompson) and Hájek values weight each unit by the inverse of its logged "
    "assignment probability (the arm's weight when the unit was assigned) and are unbiased "
    "(IPS) or consistent (Hájek); their bootstrap intervals treat units as independent."
)


@dataclass(frozen=True)
class ArmValue(ToDictMixin):
    """One arm's value: the naive mean and the IPS and Hájek estimates, each with a CI."""

    arm: Arm
    n_units: int
    naive: Interval
    ips: Interval
    hajek: Interval
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BanditAnalysis(ToDictMixin):
    """State and per-arm values of a Thompson-sampling experiment.

    `weights` are the allocation the settings give now (equal while `in_burn_in`),
    `prob_best` the posterior P(arm has the highest rate) before the min-share floor.
    """

    arms: tuple[Arm, ...]
    weights: tuple[float, ...]
    prob_best: tuple[float, ...]
    n_units: tuple[int, ...]
    values: tuple[ArmValue, ...]
    in_burn_in: bool
    settings: BanditSettings
    confidence: float
    n_resamples: int
    note: str = NOTE

    def value(self, arm: Arm) -> ArmValue:
        """The `ArmValue` of `arm` (KeyError when it is not an arm)."""
        for v in self.values:
            if v.arm == arm:
                return v
        raise KeyError(f"{arm!r} is not an arm of this experiment; arms: {list(self.arms)}")


def _float_array(x: Any, name: str) -> FloatArray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be an array of numbers.") from exc
    if arr.ndim not in (1, 2):
        raise DataError(f"{name} must be 1-d (one value per unit); got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or inf; drop those units first.")
    return arr


def _check_propensity(p: FloatArray) -> None:
    bad = (p <= 0) | (p > 1)
    if bad.any():
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        raise DataError(
            f"propensity must lie in (0, 1] (the logged probability of the assigned arm); "
            f"unit {list(i)} has {float(p[i])!r}. A zero means min_share was 0 or the wrong weight "
            "was logged."
        )


def _codes(arm: Any, arms: Sequence[Arm]) -> npt.NDArray[np.intp]:
    """Index of each unit's arm in `arms`, or `DataError` naming an unknown label."""
    labels = list(arms)
    if len(labels) < 2:
        raise DataError(f"arms must list at least 2 arms; got {labels!r}.")
    if len(set(labels)) != len(labels):
        raise DataError(f"arms must be distinct; got {labels!r}.")
    a = np.asarray(arm)
    if a.ndim not in (1, 2):
        raise DataError(f"arm must be 1-d (one label per unit); got shape {a.shape}.")
    codes = np.full(a.shape, -1, dtype=np.intp)
    for k, label in enumerate(labels):
        codes[a == np.asarray(label)] = k
    if (codes < 0).any():
        first = a[tuple(np.argwhere(codes < 0)[0])].item()
        raise DataError(
            f"unit arm {first!r} is not one of the arms {labels!r} (check the label type: "
            "'1' and 1 differ)."
        )
    return codes


def _sums(
    codes: npt.NDArray[np.intp], reward: FloatArray, propensity: FloatArray, k: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-arm sums along the last axis: (Σ 1[A=k], Σ 1[A=k] Y, Σ 1[A=k] Y/p, Σ 1[A=k]/p)."""
    ind = codes == k
    inv = np.where(ind, 1.0 / propensity, 0.0)
    return (
        ind.sum(axis=-1).astype(np.float64),
        np.where(ind, reward, 0.0).sum(axis=-1),
        (inv * reward).sum(axis=-1),
        inv.sum(axis=-1),
    )


def _estimates(
    codes: npt.NDArray[np.intp], reward: FloatArray, propensity: FloatArray, k: int
) -> dict[str, FloatArray]:
    """naive, ips and hajek for arm `k` along the last axis (NaN where undefined)."""
    n_arm, sum_y, sum_w_y, sum_w = _sums(codes, reward, propensity, k)
    n_all = codes.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "naive": np.asarray(sum_y / n_arm),
            "ips": np.asarray(sum_w_y / n_all),
            "hajek": np.asarray(sum_w_y / sum_w),
        }


def arm_estimates(
    arm: Any, reward: Any, propensity: Any, arms: Sequence[Arm]
) -> dict[str, FloatArray]:
    """Point estimates (no CIs): {"naive", "ips", "hajek"} -> array (..., n_arms).

    Inputs are 1-d over units, or 2-d (runs x units) for many logs of equal length at once
    (e.g. simulations); NaN marks an arm with no units (naive, Hájek).
    """
    codes = _codes(arm, arms)
    y = _float_array(reward, "reward")
    p = _float_array(propensity, "propensity")
    if not codes.shape == y.shape == p.shape:
        raise DataError(
            f"arm, reward and propensity must have the same shape; got {codes.shape}, "
            f"{y.shape}, {p.shape}."
        )
    if codes.shape[-1] == 0:
        raise DataError("the log is empty; there are no units to estimate from.")
    _check_propensity(p)
    per_arm = [_estimates(codes, y, p, k) for k in range(len(arms))]
    return {name: np.stack([e[name] for e in per_arm], axis=-1) for name in per_arm[0]}


def ips_arm_values(
    arm: Any,
    reward: Any,
    propensity: Any,
    arms: Sequence[Arm],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[ArmValue]:
    """Naive, IPS and Hájek value of every arm with seeded percentile bootstrap CIs.

    Args:
        arm: the arm of each unit (labels from `arms`).
        reward: each unit's metric Y_u (e.g. its clicks, or clicks / exposures).
        propensity: each unit's logged assignment probability p_u (the arm's weight at
            the moment the unit was assigned), in (0, 1].
        arms: every arm of the experiment, in report order.
        n_resamples, confidence, seed: the bootstrap over units (resampled jointly).

    Naive and Hájek CIs need at least `MIN_CI_UNITS` units in the arm; below that the
    bounds are NaN and a note says why.
    """
    estimates = arm_estimates(arm, reward, propensity, arms)
    codes = _codes(arm, arms)
    y = _float_array(reward, "reward")
    p = _float_array(propensity, "propensity")
    if codes.ndim != 1:
        raise DataError("ips_arm_values takes one log (1-d arrays); use arm_estimates for many.")
    if codes.size < 2:
        raise DataError("the bootstrap needs at least 2 units in the log.")
    index = np.arange(codes.size, dtype=np.float64)
    out = []
    for k, label in enumerate(arms):
        n_k = int(np.count_nonzero(codes == k))
        intervals: dict[str, Interval] = {}
        notes: list[str] = []
        for name in ("naive", "ips", "hajek"):
            point = float(estimates[name][k])
            if name != "ips" and n_k < MIN_CI_UNITS:
                intervals[name] = Interval(point, math.nan, math.nan)
                continue

            def statistic(idx: FloatArray, axis: int = -1, _name: str = name, _k: int = k) -> Any:
                rows = idx.astype(np.intp)
                return _estimates(codes[rows], y[rows], p[rows], _k)[_name]

            res = bootstrap(
                index, statistic, n_resamples=n_resamples, confidence=confidence, seed=seed
            )
            intervals[name] = res.interval
        if n_k < MIN_CI_UNITS:
            notes.append(
                f"{n_k} unit(s) in this arm: no naive or Hájek interval below {MIN_CI_UNITS}."
            )
        out.append(ArmValue(label, n_k, notes=tuple(notes), **intervals))
    return out


def analyse_bandit(
    arm: Any,
    reward: Any,
    propensity: Any,
    arms: Sequence[Arm],
    *,
    successes: npt.ArrayLike,
    trials: npt.ArrayLike,
    units: npt.ArrayLike | None = None,
    settings: BanditSettings | None = None,
    seed: int = 0,
    n_resamples: int = 2000,
    confidence: float = 0.95,
) -> BanditAnalysis:
    """Weights now, P(best) and naive / IPS / Hájek values of every arm.

    Args:
        arm, reward, propensity: the per-unit log (see `ips_arm_values`).
        arms: every arm, in the order of the per-arm arrays.
        successes, trials: per-arm totals of the primary metric (clicks, exposures).
        units: per-arm unit counts for the burn-in (default: counted from `arm`).
        settings: the experiment's `BanditSettings` (default: the defaults).
        seed: seeds the posterior draws and the bootstrap.
    """
    settings = settings if settings is not None else BanditSettings()
    values = ips_arm_values(
        arm, reward, propensity, arms, n_resamples=n_resamples, confidence=confidence, seed=seed
    )
    n_units = np.array([v.n_units for v in values], dtype=np.int64)
    unit_counts = n_units if units is None else units
    s = np.asarray(successes)
    t = np.asarray(trials)
    if s.shape != (len(arms),):
        raise DataError(f"successes must hold one count per arm ({len(arms)}); got {s.shape}.")
    # One seed for both: out of burn-in the weights are exactly the floored `best`.
    weights = thompson_weights(s, t, unit_counts, settings, np.random.default_rng(seed))
    best = prob_best(
        s,
        t,
        prior_alpha=settings.prior_alpha,
        prior_beta=settings.prior_beta,
        draws=settings.draws,
        rng=np.random.default_rng(seed),
    )
    return BanditAnalysis(
        arms=tuple(arms),
        weights=tuple(float(w) for w in weights),
        prob_best=tuple(float(b) for b in best),
        n_units=tuple(int(n) for n in n_units),
        values=tuple(values),
        in_burn_in=bool(in_burn_in(unit_counts, settings)),
        settings=settings,
        confidence=confidence,
        n_resamples=n_resamples,
    )
