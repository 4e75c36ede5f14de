"""Paired significance tests over per-user metric values (CIs: `abrec.stats.bootstrap`).

Every function is vectorised over metrics: pass an ``[n_users]`` array or an
``[n_users, n_metrics]`` matrix and get one result per metric column. Randomised
procedures take an explicit `seed` and are deterministic given it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from abrec.errors import DataError
from abrec.stats.multiple import holm as stats_holm

_MAX_CELLS = 20_000_000  # bound on resamples x users held in memory at once


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired test, one entry per metric column."""

    statistic: np.ndarray
    p_value: np.ndarray
    n: np.ndarray
    method: str


def _as_matrix(values: np.ndarray, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{name} must be [n_users] or [n_users, n_metrics], got {x.shape}")
    if np.isinf(x).any():
        raise DataError(f"{name} contain infinite values; metrics must be finite or NaN")
    return x


def _paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, y = _as_matrix(a, "a"), _as_matrix(b, "b")
    if x.shape != y.shape:
        raise DataError(f"paired samples need equal shapes, got {x.shape} and {y.shape}")
    d = x - y
    if np.isnan(d).any():
        raise DataError("paired samples contain NaN; compare only users scored in both")
    if d.shape[0] < 2:
        raise DataError(f"paired tests need at least 2 users, got {d.shape[0]}")
    return d


def _chunks(n_total: int, n_users: int) -> list[tuple[int, int]]:
    step = max(1, _MAX_CELLS // max(n_users, 1))
    return [(s, min(s + step, n_total)) for s in range(0, n_total, step)]


def paired_ttest(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Two-sided paired t-test of mean(a - b) = 0 per column (Student t, n - 1 df)."""
    d = _paired(a, b)
    n = d.shape[0]
    mean = d.mean(axis=0)
    sd = d.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / np.sqrt(n))
    p = 2.0 * sps.t.sf(np.abs(t), df=n - 1)
    # Identical samples: no evidence of a difference.
    same = sd == 0
    t = np.where(same & (mean == 0), 0.0, t)
    p = np.where(same, np.where(mean == 0, 1.0, 0.0), p)
    return PairedTest(t, p, np.full(d.shape[1], n), "paired t-test")


def wilcoxon_signed_rank(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test per column.

    Zero differences are dropped (Wilcoxon's method); the p-value uses the normal
    approximation with tie correction and no continuity correction, except for columns
    with at most 25 non-zero differences and no ties, which get the exact null
    distribution. The statistic is ``T+``, the rank sum of positive differences.
    """
    d = _paired(a, b)
    absd = np.where(d == 0, np.nan, np.abs(d))
    ranks = sps.rankdata(absd, axis=0, nan_policy="omit")
    nz = d != 0
    n_eff = nz.sum(axis=0).astype(np.float64)
    t_plus = np.where(d > 0, ranks, 0.0).sum(axis=0)
    mean = n_eff * (n_eff + 1) / 4.0
    var = n_eff * (n_eff + 1) * (2 * n_eff + 1) / 24.0
    tie_term = np.zeros(d.shape[1])
    has_ties = np.zeros(d.shape[1], dtype=bool)
    for j in range(d.shape[1]):  # loop over metrics only: tie counts per column
        _, cnt = np.unique(absd[nz[:, j], j], return_counts=True)
        tie_term[j] = float((cnt**3 - cnt).sum())
        has_ties[j] = bool((cnt > 1).any())
    var = var - tie_term / 48.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (t_plus - mean) / np.sqrt(var)
    p = np.where(var > 0, 2.0 * sps.norm.sf(np.abs(z)), 1.0)
    for jj in np.flatnonzero((n_eff > 0) & (n_eff <= 25) & ~has_ties):
        p[jj] = _exact_signed_rank_p(int(n_eff[jj]), float(t_plus[jj]))
    return PairedTest(t_plus, np.minimum(p, 1.0), n_eff.astype(np.int64), "Wilcoxon signed-rank")


def _exact_signed_rank_p(n: int, t_plus: float) -> float:
    """Exact two-sided p of T+ for n untied non-zero differences (dynamic programming)."""
    max_sum = n * (n + 1) // 2
    counts = np.zeros(max_sum + 1, dtype=np.float64)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    dist = counts / counts.sum()
    t = round(t_plus)
    lower = dist[: t + 1].sum()
    upper = dist[t:].sum()
    return float(min(1.0, 2.0 * min(lower, upper)))


def permutation_test(
    a: np.ndarray, b: np.ndarray, n_permutations: int = 10_000, seed: int = 0
) -> PairedTest:
    """Two-sided paired permutation test of mean(a - b) = 0 by random sign flips.

    p = (1 + #{|mean of flipped d| >= |observed mean|}) / (n_permutations + 1), which is
    a valid (slightly conservative) Monte Carlo p-value.
    """
    d = _paired(a, b)
    if n_permutations < 1:
        raise DataError(f"n_permutations must be positive, got {n_permutations}")
    n = d.shape[0]
    obs = np.abs(d.mean(axis=0))
    tol = 1e-12 * np.maximum(1.0, obs)
    rng = np.random.default_rng(seed)
    exceed = np.zeros(d.shape[1], dtype=np.int64)
    for start, stop in _chunks(n_permutations, n):
        signs = rng.integers(0, 2, size=(stop - start, n), dtype=np.int8) * 2 - 1
        perm = np.abs(signs.astype(np.float64) @ d) / n
        exceed += (perm >= obs - tol).sum(axis=0)
    p = (1.0 + exceed) / (n_permutations + 1.0)
    return PairedTest(d.mean(axis=0), p, np.full(d.shape[1], n), "paired permutation (sign-flip)")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), NaN passed through.

    The adjustment is :func:`abrec.stats.holm` applied to the non-NaN entries.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    if ((q < 0) | (q > 1)).any():
        raise DataError("p-values must lie in [0, 1]")
    if q.size:
        out[ok] = stats_holm(q)
    return out
