"""Multiple-testing corrections across metrics and variants."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from abrec.stats.errors import StatsInputError


def _pvals(pvalues: npt.ArrayLike) -> npt.NDArray[np.float64]:
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise StatsInputError(f"pvalues must be one-dimensional, got shape {p.shape}.")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise StatsInputError("p-values must be finite numbers in [0, 1].")
    return p


def _adjust(
    pvalues: npt.ArrayLike,
    step: Callable[[npt.NDArray[np.float64], int], npt.NDArray[np.float64]],
) -> npt.NDArray[np.float64]:
    """Apply `step(sorted p-values, m)` in ascending order, cap at 1 and restore the order."""
    p = _pvals(pvalues)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    out = np.empty(m)
    out[order] = np.minimum(step(p[order], m), 1.0)
    return out


def _holm_step(p: npt.NDArray[np.float64], m: int) -> npt.NDArray[np.float64]:
    return np.maximum.accumulate((m - np.arange(m)) * p)


def _bh_step(p: npt.NDArray[np.float64], m: int) -> npt.NDArray[np.float64]:
    return np.minimum.accumulate((p * m / np.arange(1, m + 1))[::-1])[::-1]


def holm(pvalues: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Holm step-down adjusted p-values (controls the family-wise error rate)."""
    return _adjust(pvalues, _holm_step)


def benjamini_hochberg(pvalues: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Benjamini-Hochberg step-up adjusted p-values (controls the false discovery rate)."""
    return _adjust(pvalues, _bh_step)
