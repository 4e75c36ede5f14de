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

FloatArray = npt.NDArray[np.float64]

#: Estimator names in the order `estimate_all` returns them.
ESTIMATORS = ("ips", "snips", "dm", "dr", "switch_dr")
_CHUNK_ELEMENTS = 4_000_000


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


def _round_index(rounds: Any, n: int) -> tuple[npt.NDArray[np.intp], int]:
    """Dense round index per row (each row its own round when ``rounds`` is None)."""
    if rounds is None:
        return np.arange(n, dtype=np.intp), n
    r = np.asarray(rounds)
    if r.ndim != 1 or r.size != n:
        raise DataError(f"rounds must be 1-D with one id per row ({n}); got shape {r.shape}.")
    _, inverse = np.unique(r, return_inverse=True)
    inverse = inverse.astype(np.intp).ravel()
    return inverse, int(inverse.max()) + 1


def _check_ci_args(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}.")
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


def _ratio_with_ci(
    estimator: str,
    num: FloatArray,
    den: FloatArray,
    rounds: Any,
    n_boot: int,
    level: float,
    seed: int | None,
) -> OPEResult:
    """sum(num) / sum(den) and its percentile bootstrap CI, resampling rounds."""
    total_den = float(den.sum())
    if total_den <= 0:
        raise DataError(
            f"{estimator} is undefined: the evaluation policy gives zero probability to every "
            "logged action (the importance weights sum to 0)."
        )
    value = float(num.sum()) / total_den
    index, n_rounds = _round_index(rounds, num.size)
    num_r = np.bincount(index, weights=num, minlength=n_rounds)
    den_r = np.bincount(index, weights=den, minlength=n_rounds)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n_rounds)
    stats = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n_rounds, size=(stop - start, n_rounds))
        with np.errstate(divide="ignore", invalid="ignore"):
            stats[start:stop] = num_r[idx].sum(axis=1) / den_r[idx].sum(axis=1)
    stats[~np.isfinite(stats)] = np.nan  # a resample whose weights all vanish
    alpha = 1.0 - level
    low, high = np.nanquantile(stats, [alpha / 2, 1 - alpha / 2])
    return OPEResult(estimator, value, float(low), float(high), int(num.size))


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
    return _ratio_with_ci("ips", iw * r, np.ones_like(r), rounds, n_boot, level, seed)


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
    return _ratio_with_ci("snips", iw * r, iw, rounds, n_boot, level, seed)


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
    return _ratio_with_ci("dm", q, np.ones_like(q), rounds, n_boot, level, seed)


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
    term = q_e + np.where(iw <= tau, iw * (r - q_log), 0.0)
    return _ratio_with_ci(name, term, np.ones_like(term), rounds, n_boot, level, seed)


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
