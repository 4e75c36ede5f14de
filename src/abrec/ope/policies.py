"""Slot-wise action distributions of the Open Bandit Dataset's two logging policies.

Both policies fill ``len_list`` slots with distinct items. ``action_dist[i, k]`` is the
probability that item ``i`` is shown in slot ``k`` (0-based); each column sums to 1.

- Uniform random: every ordered list of distinct items is equally likely, so by symmetry
  P(item i in slot k) = 1 / n_items for every slot (the random logs' ``pscore``).
- Bernoulli Thompson sampling (Saito et al. 2021, arXiv:2008.07146): draw one
  theta_i ~ Beta(alpha_i, beta_i) per item and show the items with the ``len_list`` largest
  draws, the largest in slot 0. P(item i in slot k) has no closed form for 80 items, so it is
  estimated by Monte Carlo, as the paper and Open Bandit Pipeline's
  ``BernoulliTS.compute_batch_action_dist`` do; each entry's Monte Carlo standard error is
  at most 0.5 / sqrt(n_sim).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from abrec.errors import ConfigError, DataError

FloatArray = npt.NDArray[np.float64]
_CHUNK_ELEMENTS = 2_000_000


def _check_len_list(len_list: int, n_items: int) -> int:
    if isinstance(len_list, bool) or not isinstance(len_list, int | np.integer):
        raise ConfigError(f"len_list must be an integer; got {len_list!r}.")
    if not 1 <= len_list <= n_items:
        raise ConfigError(
            f"len_list must lie in 1..{n_items} (the number of items); got {len_list}."
        )
    return int(len_list)


def uniform_action_dist(n_items: int, len_list: int = 3) -> FloatArray:
    """(n_items, len_list) matrix of 1 / n_items: the uniform-random policy's slot marginals."""
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
        raise ConfigError(f"n_items must be a positive integer; got {n_items!r}.")
    len_list = _check_len_list(len_list, int(n_items))
    return np.full((int(n_items), len_list), 1.0 / int(n_items))


def _beta_params(alpha: Any, beta: Any) -> tuple[FloatArray, FloatArray]:
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if a.ndim != 1 or b.shape != a.shape or a.size == 0:
        raise DataError(
            f"alpha and beta must be non-empty 1-D arrays of the same length (one per item); "
            f"got shapes {a.shape} and {b.shape}."
        )
    bad = ~(np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"Beta parameters must be finite and > 0; item {i} has alpha={a[i]!r}, beta={b[i]!r}."
        )
    return a, b


def bts_action_dist(
    alpha: Any,
    beta: Any,
    len_list: int = 3,
    *,
    n_sim: int = 100_000,
    seed: int | None = 0,
) -> FloatArray:
    """Monte Carlo P(item i in slot k) of Bernoulli Thompson sampling with Beta(alpha, beta).

    Each of ``n_sim`` simulated rounds draws theta ~ Beta(alpha, beta) for every item and
    ranks the items by theta (descending); the result counts how often each item lands in
    each of the first ``len_list`` slots, divided by ``n_sim``. Vectorised in chunks; the
    same ``seed`` gives the same matrix.
    """
    a, b = _beta_params(alpha, beta)
    len_list = _check_len_list(len_list, a.size)
    if isinstance(n_sim, bool) or not isinstance(n_sim, int | np.integer) or n_sim < 1:
        raise ConfigError(f"n_sim must be a positive integer; got {n_sim!r}.")
    rng = np.random.default_rng(seed)
    counts = np.zeros((a.size, len_list))
    chunk = max(1, _CHUNK_ELEMENTS // a.size)
    kth = np.arange(len_list)
    for start in range(0, int(n_sim), chunk):
        size = min(chunk, int(n_sim) - start)
        theta = rng.beta(a, b, size=(size, a.size))
        # the len_list largest draws, in descending order, without a full sort
        top = np.argpartition(-theta, kth, axis=1)[:, :len_list]
        for k in range(len_list):
            counts[:, k] += np.bincount(top[:, k], minlength=a.size)
    return counts / int(n_sim)


__all__ = ["bts_action_dist", "uniform_action_dist"]
