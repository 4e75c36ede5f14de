"""Beta-Bernoulli Thompson-sampling allocation: P(arm is best), a min-share floor, burn-in.

Every function takes one experiment (1-d arrays over arms) or a batch of experiments
(2-d arrays, one row per experiment) and returns an array of the same shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from abrec.bandit.settings import BanditSettings
from abrec.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Posterior draws held in memory at once (draws x arms x experiments).
_CHUNK_ELEMENTS = 2_000_000


def _counts(x: Any, name: str) -> IntArray:
    """`x` as a 1-d or 2-d array of non-negative integer counts, or `DataError`."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be an array of non-negative integer counts.") from exc
    if arr.ndim not in (1, 2):
        raise DataError(
            f"{name} must be 1-d (one count per arm) or 2-d (experiments x arms); "
            f"got shape {arr.shape}."
        )
    bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{name} must hold non-negative integer counts; {name}{list(first)} = {float(arr[first])!r}."
        )
    return arr.astype(np.int64)


def _check_shapes(arrays: dict[str, IntArray]) -> tuple[int, ...]:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k}{list(v)}" for k, v in shapes.items())
        raise DataError(f"per-arm arrays must have the same shape; got {listed}.")
    shape = next(iter(shapes.values()))
    if shape[-1] < 2:
        raise DataError(f"a bandit needs at least 2 arms; got {shape[-1]}.")
    return shape


def _check_rates(successes: IntArray, trials: IntArray) -> None:
    over = successes > trials
    if over.any():
        i = tuple(int(j) for j in np.argwhere(over)[0])
        raise DataError(
            f"successes exceed trials for arm {list(i)}: {successes[i]} > {trials[i]}; "
            "successes are clicks and trials the exposures of the same arm."
        )


def _rng(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer):
        raise ConfigError(f"rng must be a numpy Generator or an integer seed; got {rng!r}.")
    return np.random.default_rng(int(rng))


def prob_best(
    successes: npt.ArrayLike,
    trials: npt.ArrayLike,
    *,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    draws: int = 10_000,
    rng: np.random.Generator | int = 0,
) -> FloatArray:
    """Monte Carlo P(arm has the highest rate) under independent Beta posteriors.

    Arm k's posterior is Beta(prior_alpha + s_k, prior_beta + t_k - s_k); the result is the
    share of `draws` joint posterior draws in which arm k is the largest (sums to 1).
    """
    s = _counts(successes, "successes")
    t = _counts(trials, "trials")
    _check_shapes({"successes": s, "trials": t})
    _check_rates(s, t)
    if not (np.isfinite(prior_alpha) and np.isfinite(prior_beta)):
        raise ConfigError("prior_alpha and prior_beta must be finite.")
    if prior_alpha <= 0 or prior_beta <= 0:
        raise ConfigError(f"the Beta prior needs alpha, beta > 0; got {prior_alpha}, {prior_beta}.")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws must be a positive integer; got {draws!r}.")
    gen = _rng(rng)
    a = (prior_alpha + s).astype(np.float64).reshape(-1, s.shape[-1])
    b = (prior_beta + t - s).astype(np.float64).reshape(-1, s.shape[-1])
    n_exp, n_arms = a.shape
    wins = np.zeros((n_exp, n_arms), dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // (n_exp * n_arms))
    for start in range(0, draws, chunk):
        d = min(chunk, draws - start)
        theta = gen.beta(a[:, None, :], b[:, None, :], size=(n_exp, d, n_arms))
        best = theta.argmax(axis=-1)  # (n_exp, d)
        for k in range(n_arms):
            wins[:, k] += np.count_nonzero(best == k, axis=1)
    out: FloatArray = (wins / draws).reshape(s.shape)
    return out


def apply_min_share(weights: npt.ArrayLike, min_share: float) -> FloatArray:
    """Floor every weight at `min_share` and rescale the others so each row sums to 1.

    Arms below the floor are set to exactly `min_share`; the remaining arms share
    ``1 - (floored arms) * min_share`` in proportion to their weights. Rescaling can push
    another arm below the floor, so this repeats (at most once per arm) until none is.
    """
    w0 = np.asarray(weights, dtype=np.float64)
    if w0.ndim not in (1, 2) or w0.shape[-1] < 2:
        raise DataError(f"weights must be 1-d or 2-d over >= 2 arms; got shape {w0.shape}.")
    if not np.isfinite(w0).all() or (w0 < 0).any():
        raise DataError("weights must be finite and >= 0.")
    p = w0.reshape(-1, w0.shape[-1])
    totals = p.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise DataError("every row of weights needs a positive sum.")
    p = p / totals
    n_arms = p.shape[1]
    if not 0.0 <= min_share <= 1.0 / n_arms + 1e-12:
        raise ConfigError(
            f"min_share must lie in [0, 1/n_arms] = [0, {1.0 / n_arms:.4g}]; got {min_share!r}."
        )
    if min_share * n_arms >= 1.0 - 1e-12:
        return np.full(w0.shape, 1.0 / n_arms)
    fixed = np.zeros(p.shape, dtype=bool)
    out = p
    for _ in range(n_arms):
        free_mass = np.where(fixed, 0.0, p).sum(axis=1, keepdims=True)
        budget = 1.0 - fixed.sum(axis=1, keepdims=True) * min_share
        out = np.where(fixed, min_share, p * (budget / free_mass))
        below = ~fixed & (out < min_share)
        if not below.any():
            break
        fixed |= below
    result: FloatArray = out.reshape(w0.shape)
    return result


def in_burn_in(units: npt.ArrayLike, settings: BanditSettings) -> npt.NDArray[np.bool_]:
    """Whether some arm still has fewer than ``settings.burn_in`` units (per experiment)."""
    u = _counts(units, "units")
    return np.asarray((u < settings.burn_in).any(axis=-1))


def thompson_weights(
    successes: npt.ArrayLike,
    trials: npt.ArrayLike,
    units: npt.ArrayLike,
    settings: BanditSettings,
    rng: np.random.Generator | int,
) -> FloatArray:
    """Traffic weights for the next period of a Thompson-sampling experiment.

    Args:
        successes: per-arm successes of the primary metric (clicks), shape (n_arms,) or
            (n_experiments, n_arms).
        trials: per-arm trials (exposures), same shape, ``successes <= trials``.
        units: per-arm assigned units, same shape (drives the burn-in).
        settings: prior, draws, min share and burn-in.
        rng: numpy Generator or integer seed for the Monte Carlo draws.

    Returns:
        Weights of the same shape: P(arm is best) floored at ``settings.min_share`` (each
        row sums to 1, every arm >= min_share), or equal weights while any arm of that
        experiment has fewer than ``settings.burn_in`` units.

    Raises:
        DataError: negative or non-integer counts, successes > trials, shape mismatch.
        ConfigError: ``min_share * n_arms > 1``.
    """
    s = _counts(successes, "successes")
    t = _counts(trials, "trials")
    u = _counts(units, "units")
    shape = _check_shapes({"successes": s, "trials": t, "units": u})
    _check_rates(s, t)
    n_arms = shape[-1]
    settings.check_arms(n_arms)
    burn = np.atleast_1d(in_burn_in(u, settings))
    flat_s, flat_t = s.reshape(-1, n_arms), t.reshape(-1, n_arms)
    weights = np.full((flat_s.shape[0], n_arms), 1.0 / n_arms)
    live = ~burn
    if live.any():
        p = prob_best(
            flat_s[live],
            flat_t[live],
            prior_alpha=settings.prior_alpha,
            prior_beta=settings.prior_beta,
            draws=settings.draws,
            rng=rng,
        )
        weights[live] = apply_min_share(p, settings.min_share)
    out: FloatArray = weights.reshape(shape)
    return out
