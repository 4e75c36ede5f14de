"""Off-policy value estimators (IPS, SNIPS, DM, DR, switch-DR) with seeded bootstrap CIs.

Input is logged bandit feedback, one row per logged round (or per slot of a round, with
``rounds`` naming the round of each row):

- ``rewards``: observed reward r_i;
- ``pscore``: logging propensity p_i = pi_0(a_i | x_i) of the logged action;
- ``action_dist_e``: w_i = pi_e(a_i | x_i), the evaluation policy's probability of it;
- ``q_hat_logged``: the reward model's q^(x_i, a_i) (model-based estimators only);
- ``q_hat_e``: sum_a pi_e(a | x_i) q^(x_i, a), the direct-method value of the row.

Every estimate is a ratio of sums over rows, sum(num_i) / sum(den_i): den_i = 1 for the
mean-type estimators and den_i = w_i / p_i for SNIPS. The confidence interval is a
percentile bootstrap that resamples whole rounds with replacement, so slots of one round
move together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from abrec.errors import DataError
from abrec.stats.bootstrap import Paired, bootstrap

FloatArray = npt.NDArray[np.float64]

#: Estimator names in the order `estimate_all` returns them.
ESTIMATORS = ("ips", "snips", "dm", "dr", "switch_dr")


@dataclass(frozen=True)
class OPEResult:
    """An off-policy value estimate with its bootstrap confidence interval over ``n`` rows."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int


def _array(x: Any, name: str) -> FloatArray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a 1-D array of numbers.") from exc
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D (one value per logged row); got shape {arr.shape}.")
    if arr.size == 0:
        raise DataError(f"{name} is empty; OPE needs at least one logged row.")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or inf at row {int(np.argmin(np.isfinite(arr)))}.")
    return arr


def _same_length(arrays: dict[str, FloatArray]) -> int:
    sizes = {name: a.size for name, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise DataError(f"input arrays must have the same length; got {listed}.")
    return next(iter(sizes.values()))


def _weights(pscore: Any, action_dist_e: Any) -> tuple[FloatArray, FloatArray]:
    p = _array(pscore, "pscore")
    w = _array(action_dist_e, "action_dist_e")
    if ((p <= 0) | (p > 1)).any():
        bad = int(np.argmax((p <= 0) | (p > 1)))
        raise DataError(
            f"pscore must lie in (0, 1] (a logged action has positive logging probability); "
            f"row {bad} has {p[bad]!r}."
        )
    if ((w < 0) | (w > 1)).any():
        bad = int(np.argmax((w < 0) | (w > 1)))
        raise DataError(f"action_dist_e must lie in [0, 1]; row {bad} has {w[bad]!r}.")
    return p, w


def _rounds(rounds: Any, n: int) -> Any:
    """``rounds`` checked to give one id per row (None: each row is its own round)."""
    if rounds is None:
        return None
    r = np.asarray(rounds)
    if r.ndim != 1 or r.size != n:
        raise DataError(f"rounds must be 1-D with one id per row ({n}); got shape {r.shape}.")
    return r


def _check_ci_args(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 10:
        raise ValueError(f"n_boot must be an integer >= 10; got {n_boot!r}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1; got {level!r}.")


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if math.isnan(tau) or tau < 0:
        raise ValueError(f"tau must be >= 0 (inf gives DR, 0 gives DM); got {tau!r}.")
    return tau


def _logged(
    rewards: Any, pscore: Any, action_dist_e: Any, **models: Any
) -> tuple[FloatArray, FloatArray, list[FloatArray]]:
    """Validated (rewards, importance weights w / p, [reward-model arrays...]) of one log."""
    r = _array(rewards, "rewards")
    p, w = _weights(pscore, action_dist_e)
    extra = {name: _array(value, name) for name, value in models.items()}
    _same_length({"rewards": r, "pscore": p, "action_dist_e": w, **extra})
    return r, w / p, list(extra.values())


def _ratio_of_sums(num: FloatArray, den: FloatArray, axis: int = -1) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.sum(axis=axis) / den.sum(axis=axis)


def _ratio_with_ci(
    estimator: str,
    num: FloatArray,
    den: FloatArray,
    rounds: Any,
    n_boot: int,
    level: float,
    seed: int | None,
) -> OPEResult:
    """sum(num) / sum(den) and its percentile bootstrap CI, resampling whole rounds.

    A resample whose denominator vanishes (every resampled weight 0) is dropped.
    """
    total_den = float(den.sum())
    if total_den <= 0:
        raise DataError(
            f"{estimator} is undefined: the evaluation policy gives zero probability to every "
            "logged action (the importance weights sum to 0)."
        )
    value = float(num.sum()) / total_den
    if num.size < 2:
        return OPEResult(estimator, value, math.nan, math.nan, int(num.size))
    sample = Paired(num, den, clusters=_rounds(rounds, num.size))
    if sample.n_units < 2:  # one round: nothing to resample
        return OPEResult(estimator, value, math.nan, math.nan, int(num.size))
    ci = bootstrap(
        sample,
        _ratio_of_sums,
        n_resamples=int(n_boot),
        confidence=level,
        seed=seed,
        nonfinite="omit",
    ).interval
    return OPEResult(estimator, value, ci.low, ci.high, int(num.size))


Terms = tuple[FloatArray, FloatArray]


def _ips_terms(r: FloatArray, iw: FloatArray) -> Terms:
    return iw * r, np.ones_like(r)


def _snips_terms(r: FloatArray, iw: FloatArray) -> Terms:
    return iw * r, iw


def _dm_terms(q_e: FloatArray) -> Terms:
    return q_e, np.ones_like(q_e)


def _switch_dr_terms(
    r: FloatArray, iw: FloatArray, q_log: FloatArray, q_e: FloatArray, tau: float
) -> Terms:
    term = q_e + np.where(iw <= tau, iw * (r - q_log), 0.0)
    return term, np.ones_like(term)


def ips(
    rewards: Any,
    pscore: Any,
    action_dist_e: Any,
    *,
    rounds: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
) -> OPEResult:
    """Inverse propensity scoring: mean(w / p * r)."""
    _check_ci_args(n_boot, level)
    r, iw, _ = _logged(rewards, pscore, action_dist_e)
    return _ratio_with_ci("ips", *_ips_terms(r, iw), rounds, n_boot, level, seed)


def snips(
    rewards: Any,
    pscore: Any,
    action_dist_e: Any,
    *,
    rounds: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
) -> OPEResult:
    """Self-normalised IPS: sum(w / p * r) / sum(w / p)."""
    _check_ci_args(n_boot, level)
    r, iw, _ = _logged(rewards, pscore, action_dist_e)
    return _ratio_with_ci("snips", *_snips_terms(r, iw), rounds, n_boot, level, seed)


def dm(
    q_hat_e: Any,
    *,
    rounds: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
) -> OPEResult:
    """Direct method: mean(q_hat_e), the reward model's value of the evaluation policy."""
    _check_ci_args(n_boot, level)
    q = _array(q_hat_e, "q_hat_e")
    return _ratio_with_ci("dm", *_dm_terms(q), rounds, n_boot, level, seed)


def switch_dr(
    rewards: Any,
    pscore: Any,
    action_dist_e: Any,
    q_hat_logged: Any,
    q_hat_e: Any,
    *,
    tau: float = math.inf,
    rounds: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
    name: str = "switch_dr",
) -> OPEResult:
    """Switch-DR (Wang et al. 2017): the DR correction only where w / p <= tau.

    mean(q_hat_e + 1[w / p <= tau] * w / p * (r - q_hat_logged)); tau = inf is DR and
    tau = 0 is DM (up to rows with w = 0, whose correction is 0 either way).
    """
    _check_ci_args(n_boot, level)
    tau = _check_tau(tau)
    r, iw, (q_log, q_e) = _logged(
        rewards, pscore, action_dist_e, q_hat_logged=q_hat_logged, q_hat_e=q_hat_e
    )
    terms = _switch_dr_terms(r, iw, q_log, q_e, tau)
    return _ratio_with_ci(name, *terms, rounds, n_boot, level, seed)


def dr(
    rewards: Any,
    pscore: Any,
    action_dist_e: Any,
    q_hat_logged: Any,
    q_hat_e: Any,
    *,
    rounds: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
) -> OPEResult:
    """Doubly robust: mean(q_hat_e + w / p * (r - q_hat_logged))."""
    return switch_dr(
        rewards,
        pscore,
        action_dist_e,
        q_hat_logged,
        q_hat_e,
        tau=math.inf,
        rounds=rounds,
        n_boot=n_boot,
        level=level,
        seed=seed,
        name="dr",
    )


def estimate_all(
    rewards: Any,
    pscore: Any,
    action_dist_e: Any,
    q_hat_logged: Any = None,
    q_hat_e: Any = None,
    *,
    tau: float = math.inf,
    rounds: Any = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
) -> dict[str, OPEResult]:
    """Every estimator the inputs allow, keyed by name (see `ESTIMATORS` for the order).

    IPS and SNIPS always; DM, DR and switch-DR (with ``tau``) when both ``q_hat_logged`` and
    ``q_hat_e`` are given. All share ``seed``, so they resample the same rounds.
    """
    if (q_hat_logged is None) != (q_hat_e is None):
        raise ValueError(
            "give both q_hat_logged and q_hat_e for model-based estimators, or neither."
        )
    ci: dict[str, Any] = {"rounds": rounds, "n_boot": n_boot, "level": level, "seed": seed}
    out = {
        "ips": ips(rewards, pscore, action_dist_e, **ci),
        "snips": snips(rewards, pscore, action_dist_e, **ci),
    }
    if q_hat_logged is not None and q_hat_e is not None:
        _same_length({"rewards": _array(rewards, "rewards"), "q_hat_e": _array(q_hat_e, "q_hat_e")})
        out["dm"] = dm(q_hat_e, **ci)
        out["dr"] = dr(rewards, pscore, action_dist_e, q_hat_logged, q_hat_e, **ci)
        out["switch_dr"] = switch_dr(
            rewards, pscore, action_dist_e, q_hat_logged, q_hat_e, tau=tau, **ci
        )
    return out


def ratio_terms(
    rewards: Any,
    pscore: Any,
    action_dist_e: Any,
    q_hat_logged: Any = None,
    q_hat_e: Any = None,
    *,
    tau: float = math.inf,
) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per-row (numerator, denominator) of every estimator the inputs allow.

    Each estimate is sum(num) / sum(den) (see the module docstring); callers that bootstrap
    an estimate together with something else (e.g. a relative error against an on-policy
    value) resample these terms. Keys and order as in `estimate_all`.
    """
    if (q_hat_logged is None) != (q_hat_e is None):
        raise ValueError(
            "give both q_hat_logged and q_hat_e for model-based estimators, or neither."
        )
    tau = _check_tau(tau)
    if q_hat_logged is None:
        r, iw, _ = _logged(rewards, pscore, action_dist_e)
        return {"ips": _ips_terms(r, iw), "snips": _snips_terms(r, iw)}
    r, iw, (q_log, q_e) = _logged(
        rewards, pscore, action_dist_e, q_hat_logged=q_hat_logged, q_hat_e=q_hat_e
    )
    return {
        "ips": _ips_terms(r, iw),
        "snips": _snips_terms(r, iw),
        "dm": _dm_terms(q_e),
        "dr": _switch_dr_terms(r, iw, q_log, q_e, math.inf),
        "switch_dr": _switch_dr_terms(r, iw, q_log, q_e, tau),
    }
