"""Cross-fitted reward model q^(item, slot) for the model-based estimators (DM, DR, switch-DR).

The model is a smoothed click-through rate per (item, slot), shrunk towards a position-based
click model (Craswell et al. 2008): CTR(i, k) ~ attractiveness(i) x examination(k).

    g      = C / N                                  (overall rate of the training rows)
    s_k    = (C_k + m g) / (N_k + m) / g            (slot factor)
    a_i    = (C_i + m g) / (N_i + m)                (item rate, shrunk to g)
    q(i,k) = (C_ik + m a_i s_k) / (N_ik + m)        (cell rate, shrunk to a_i s_k)

with C, N the clicks and impressions of the training rows (per slot, item, cell). The prior
strength m (pseudo-impressions) is given, or chosen by empirical Bayes: the m maximising the
beta-binomial marginal likelihood of the items' click counts, sum_i log BetaBinom(C_i | N_i,
m g, m (1 - g)) (scipy.stats.betabinom, bounded scalar search over log m).

Cross-fitting (Chernozhukov et al. 2018): rows are split into K folds by round; the q of a
row comes from the table fitted on the other K - 1 folds, so a row's own reward never
enters its prediction and DR keeps its unbiasedness despite the model being fitted on the
same log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

from abrec.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
#: Search range of the empirical-Bayes prior strength (pseudo-impressions).
PRIOR_STRENGTH_RANGE = (1.0, 1e7)


def _index(x: Any, name: str, upper: int) -> IntArray:
    arr = np.asarray(x)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"{name} must be a 1-D integer array; got dtype {arr.dtype}, shape {arr.shape}."
        )
    if arr.size and (arr.min() < 0 or arr.max() >= upper):
        raise DataError(
            f"{name} must lie in 0..{upper - 1}; got values in {arr.min()}..{arr.max()}."
        )
    return arr.astype(np.intp)


def _logged_rows(
    actions: Any, positions: Any, rewards: Any, n_items: int, n_slots: int
) -> tuple[IntArray, IntArray, FloatArray]:
    a = _index(actions, "actions", n_items)
    k = _index(positions, "positions", n_slots)
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or not np.isfinite(r).all():
        raise DataError("rewards must be a 1-D array of finite numbers.")
    if not a.size == k.size == r.size:
        raise DataError(
            f"actions, positions and rewards must have the same length; got {a.size}, "
            f"{k.size}, {r.size}."
        )
    if a.size == 0:
        raise DataError("the reward model needs at least one logged row.")
    return a, k, r


def empirical_bayes_strength(clicks: Any, shows: Any) -> float:
    """The prior strength m maximising the beta-binomial likelihood of per-unit click counts.

    Units with no impressions are ignored. Returns the upper end of `PRIOR_STRENGTH_RANGE`
    when the data show no over-dispersion (complete pooling) or have no clicks at all.
    """
    c = np.asarray(clicks, dtype=np.float64)
    n = np.asarray(shows, dtype=np.float64)
    keep = n > 0
    c, n = np.rint(c[keep]), n[keep]
    g = c.sum() / n.sum() if n.sum() > 0 else 0.0
    lo, hi = PRIOR_STRENGTH_RANGE
    if not 0.0 < g < 1.0:
        return hi

    def neg_loglik(log_m: float) -> float:
        m = math.exp(log_m)
        return -float(stats.betabinom.logpmf(c, n, m * g, m * (1.0 - g)).sum())

    res = optimize.minimize_scalar(
        neg_loglik, bounds=(math.log(lo), math.log(hi)), method="bounded"
    )
    return float(math.exp(res.x))


def item_slot_ctr(
    actions: Any,
    positions: Any,
    rewards: Any,
    n_items: int,
    n_slots: int,
    *,
    prior_strength: float | None = None,
) -> FloatArray:
    """(n_items, n_slots) smoothed CTR table q(i, k) fitted on the given rows (see module doc).

    ``prior_strength=None`` chooses m by empirical Bayes; ``0`` gives raw cell means (cells
    without impressions then fall back to a_i s_k).
    """
    a, k, r = _logged_rows(actions, positions, rewards, n_items, n_slots)
    if prior_strength is not None and (not math.isfinite(prior_strength) or prior_strength < 0):
        raise ConfigError(f"prior_strength must be a finite number >= 0; got {prior_strength!r}.")
    cell = a * n_slots + k
    size = n_items * n_slots
    clicks = np.bincount(cell, weights=r, minlength=size).reshape(n_items, n_slots)
    shows = np.bincount(cell, minlength=size).reshape(n_items, n_slots).astype(np.float64)
    total_c, total_n = clicks.sum(), shows.sum()
    g = total_c / total_n
    if g <= 0:
        return np.zeros((n_items, n_slots))
    c_i, n_i = clicks.sum(axis=1), shows.sum(axis=1)
    m = empirical_bayes_strength(c_i, n_i) if prior_strength is None else prior_strength
    c_k, n_k = clicks.sum(axis=0), shows.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slot = np.where(n_k + m > 0, (c_k + m * g) / (n_k + m), g) / g
        item = np.where(n_i + m > 0, (c_i + m * g) / (n_i + m), g)
        prior = item[:, None] * slot[None, :]
        return np.where(shows + m > 0, (clicks + m * prior) / (shows + m), prior)


@dataclass(frozen=True, eq=False)
class CrossFitted:
    """Out-of-fold reward tables: row j is predicted by ``tables[folds[j]]``.

    Attributes:
        folds: fold of each logged row (0 .. n_folds - 1).
        tables: (n_folds, n_items, n_slots); table f was fitted without fold f's rows.
        prior_strength: the m each table used (empirical Bayes or given), one per fold.
    """

    folds: IntArray
    tables: FloatArray
    prior_strength: tuple[float, ...]

    def q_logged(self, actions: Any, positions: Any) -> FloatArray:
        """q^(x_j, a_j, k_j) of each logged row."""
        return self.tables[self.folds, np.asarray(actions), np.asarray(positions)]

    def q_policy(self, positions: Any, action_dist: Any) -> FloatArray:
        """sum_a pi_e(a | k_j) q^(x_j, a, k_j): the direct-method value of each row's slot."""
        pi = np.asarray(action_dist, dtype=np.float64)
        if pi.shape != self.tables.shape[1:]:
            raise DataError(
                f"action_dist must have shape (n_items, n_slots) = {self.tables.shape[1:]}; "
                f"got {pi.shape}."
            )
        per_fold = (self.tables * pi[None]).sum(axis=1)  # (n_folds, n_slots)
        return per_fold[self.folds, np.asarray(positions)]


def crossfit_item_slot_ctr(
    actions: Any,
    positions: Any,
    rewards: Any,
    n_items: int,
    n_slots: int,
    *,
    rounds: Any = None,
    n_folds: int = 3,
    prior_strength: float | None = None,
    seed: int | None = 0,
) -> CrossFitted:
    """K-fold cross-fitted `item_slot_ctr`; whole rounds go to one fold (seeded shuffle)."""
    a, k, r = _logged_rows(actions, positions, rewards, n_items, n_slots)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2; got {n_folds!r}.")
    if rounds is None:
        round_index = np.arange(a.size, dtype=np.intp)
    else:
        ids = np.asarray(rounds)
        if ids.ndim != 1 or ids.size != a.size:
            raise DataError(
                f"rounds must be 1-D with one id per row ({a.size}); got shape {ids.shape}."
            )
        round_index = np.unique(ids, return_inverse=True)[1].astype(np.intp).ravel()
    n_rounds = int(round_index.max()) + 1
    if n_rounds < n_folds:
        raise DataError(f"{n_rounds} round(s) cannot be split into {n_folds} folds.")
    perm = np.random.default_rng(seed).permutation(n_rounds)
    fold_of_round = np.empty(n_rounds, dtype=np.intp)
    fold_of_round[perm] = np.arange(n_rounds) % n_folds
    folds = fold_of_round[round_index]
    tables, strengths = [], []
    for f in range(int(n_folds)):
        train = folds != f
        c = np.bincount(a[train], weights=r[train], minlength=n_items)
        n = np.bincount(a[train], minlength=n_items)
        m = empirical_bayes_strength(c, n) if prior_strength is None else prior_strength
        strengths.append(float(m))
        tables.append(
            item_slot_ctr(a[train], k[train], r[train], n_items, n_slots, prior_strength=m)
        )
    return CrossFitted(folds, np.stack(tables), tuple(strengths))


__all__ = [
    "PRIOR_STRENGTH_RANGE",
    "CrossFitted",
    "crossfit_item_slot_ctr",
    "empirical_bayes_strength",
    "item_slot_ctr",
]
