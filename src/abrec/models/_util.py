"""Small shared numeric helpers for the models (not public API)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from abrec.errors import ConfigError


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """Raise ConfigError unless `value` is a finite positive (or non-negative) number."""
    ok = np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


def active_items(train: sp.csr_matrix) -> np.ndarray:
    """Indices of item columns with at least one training interaction."""
    return np.flatnonzero(np.diff(train.tocsc().indptr) > 0)


def scatter_columns(values: np.ndarray, cols: np.ndarray, n_items: int) -> np.ndarray:
    """Place `values` (n x len(cols)) into a zero float32 matrix (n x n_items) at `cols`."""
    out = np.zeros((values.shape[0], n_items), dtype=np.float32)
    out[:, cols] = values
    return out


def recency_weights(
    user_idx: np.ndarray, timestamps: np.ndarray | None, half_life: float | None
) -> np.ndarray:
    """Per-event weights 0.5 ** (age / half_life), age = events after it in the user's history.

    Ties in time keep input order (stable). `half_life=None` gives weight 1 everywhere.
    """
    n = len(user_idx)
    if half_life is None or n == 0:
        return np.ones(n, dtype=np.float64)
    t = np.zeros(n) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    order = np.lexsort((np.arange(n), t, user_idx))
    u_sorted = user_idx[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u_sorted)) + 1]
    counts = np.diff(np.r_[starts, n])
    end = np.repeat(starts + counts, counts)
    age = end - 1 - np.arange(n)
    w = np.empty(n, dtype=np.float64)
    w[order] = 0.5 ** (age / half_life)
    return w


def row_normalize(scores: np.ndarray, method: str, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-row z-score or min-max normalisation, statistics taken over `mask` columns.

    Args:
        scores: (n, m) scores.
        method: "zscore" (mean 0, sd 1 per row) or "minmax" (min 0, max 1 per row).
        mask: boolean (m,) columns the statistics are computed on (default all).
    Returns:
        float32 (n, m); constant rows become 0.
    """
    ref = scores if mask is None else scores[:, mask]
    if method == "zscore":
        mu = ref.mean(axis=1, keepdims=True, dtype=np.float64)
        sd = ref.std(axis=1, keepdims=True, dtype=np.float64)
        out = (scores - mu) / np.where(sd > 0, sd, 1.0)
    elif method == "minmax":
        lo = ref.min(axis=1, keepdims=True).astype(np.float64)
        span = ref.max(axis=1, keepdims=True) - lo
        out = (scores - lo) / np.where(span > 0, span, 1.0)
    else:
        raise ConfigError(f"normalize must be 'zscore' or 'minmax', got {method!r}")
    return out.astype(np.float32)


def jsonable(params: dict[str, Any]) -> dict[str, Any]:
    """Convert numpy scalars in params to plain Python values."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}
