"""Small shared numeric helpers for the models (not public API)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from abrec.errors import ConfigError


def active_items(train: sp.csr_matrix) -> np.ndarray:
    """Indices of item columns with at least one training interaction."""
    return np.flatnonzero(np.diff(train.tocsc().indptr) > 0)


def take_columns(X: sp.csr_matrix, items: np.ndarray) -> sp.csr_matrix:
    """``X[:, items]`` for strictly increasing ``items``: the same matrix (values, indices and
    their order) as scipy's fancy indexing, built straight from X's index arrays, which costs
    a fraction of it for the few rows a request scores."""
    X = X.tocsr()
    pos = np.full(X.shape[1], -1, dtype=np.int64)
    pos[items] = np.arange(len(items))
    new = pos[X.indices]
    keep = new >= 0
    indptr = np.concatenate(([0], np.cumsum(keep)))[X.indptr]
    return sp.csr_matrix(
        (X.data[keep], new[keep].astype(X.indices.dtype), indptr), shape=(X.shape[0], len(items))
    )


_ALIGN = 64  # bytes: every row is handed to BLAS from the same alignment


def _aligned(n: int, dtype: np.dtype[Any]) -> np.ndarray:
    """An uninitialised 1-D array of n elements starting on a 64-byte boundary."""
    raw = np.empty(n * dtype.itemsize + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + n * dtype.itemsize].view(dtype)


def rows_times(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B.T computed one row of A at a time, so a row's result never depends on the others.

    A single matrix product (gemm) over a batch picks its BLAS kernel, blocking and summation
    order from the batch shape and a row's position in it, so the same user can get scores one
    float step apart in different batches. Here every row is one matrix-vector product with
    the same shape, strides and alignment, hence bit-identical whatever else is in `A`.

    Args:
        A: (n, d) rows (e.g. user profiles or factors).
        B: (m, d) rows (e.g. item embeddings or factors).
    Returns:
        (n, m) array in the common dtype of A and B.
    """
    dtype = np.result_type(A, B)
    Bc = np.ascontiguousarray(B, dtype=dtype)
    out = np.empty((A.shape[0], Bc.shape[0]), dtype=dtype)
    row = _aligned(Bc.shape[1], dtype)
    res = _aligned(Bc.shape[0], dtype)
    for i in range(A.shape[0]):
        row[:] = A[i]
        np.matmul(Bc, row, out=res)
        out[i] = res
    return out


def weighted_sum(Z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Z @ w for a tall Z with few columns, summed column by column in a fixed order.

    Unlike a BLAS matrix-vector product, each row's value does not depend on the row's position
    or on the number of rows.
    """
    out = np.zeros(Z.shape[0], dtype=np.result_type(Z, w))
    for j in range(Z.shape[1]):
        out += Z[:, j] * w[j]
    return out


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
