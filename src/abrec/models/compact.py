"""Compact item-item weights for the EASE family: float16 storage and top-k-per-row pruning.

An EASE-style model scores a user as `x @ B` (x: the user's binary history row, B: items x items).
`ItemWeights` holds B in one of three forms and always computes in float32:

- dense float32 (the default, exactly the uncompressed model);
- dense float16 (`storage_dtype="float16"`): saved in float16 (half the disk), held in memory
  as float32 holding the float16-rounded values (numpy widens float16 in a scalar loop: doing
  it per request made scoring about 14x slower than float32, bench_compact.py);
- pruned (`prune_top_k=k`): scipy CSR keeping, in each row of B, the k entries of largest
  absolute value (ties to the lower column; exact zeros dropped); its values are stored in
  `storage_dtype` on disk and widened to a float32 CSR in memory.

Pruning by |value| keeps both the strongest positive links and the strongest negative ones
(which push items down); the contract is the same ranking API (seen items excluded by the
caller), with the scores of the pruned matrix.

float16 tolerance (documented contract, tested): every stored value differs from its float32
original by at most 2^-11 relative (round to nearest) or 2^-25 absolute (float16 subnormals),
so a score differs from the float32 model's by at most
`sum_i x_i (2^-11 |B_ij| + 2^-25)` plus float32 summation rounding.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from abrec.errors import ConfigError
from abrec.models.base import top_k

StorageDtype = Literal["float32", "float16"]
"""How B's values are stored (compute is always float32)."""

FLOAT16_REL_ERROR = 2.0**-11
"""Largest relative rounding error of a normal float16 (round to nearest even)."""
FLOAT16_ABS_ERROR = 2.0**-25
"""Largest absolute rounding error in float16's subnormal range (|v| < 2^-14)."""

_PRUNE_BLOCK = 512  # rows of B ranked at a time (bounds the float32 temporaries)


def prune_rows(B: np.ndarray, k: int) -> sp.csr_matrix:
    """float32 CSR with, per row of B, the k entries of largest |value| (ties: lower column).

    Exact zeros among the kept entries are dropped, so a row holds at most k values.
    """
    if k < 1:
        raise ConfigError(f"prune_top_k must be >= 1, got {k}")
    n, m = B.shape
    k = min(k, m)
    cols = np.empty((n, k), dtype=np.int32)
    vals = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, _PRUNE_BLOCK):
        block = np.asarray(B[start : start + _PRUNE_BLOCK], dtype=np.float32)
        idx, _ = top_k(np.abs(block), k)
        cols[start : start + len(block)] = idx
        vals[start : start + len(block)] = np.take_along_axis(block, idx, axis=1)
    order = np.argsort(cols, axis=1, kind="stable")  # CSR rows with sorted column indices
    cols = np.take_along_axis(cols, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    out = sp.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, m))
    out.eliminate_zeros()
    return out


def _check_float16(values: np.ndarray) -> None:
    big = float(np.abs(values).max(initial=0.0))
    if big > float(np.finfo(np.float16).max):
        raise ConfigError(
            f"storage_dtype float16 cannot hold a weight of magnitude {big:.3g} (max 65504); "
            "use storage_dtype float32"
        )


def _padded_rows(S: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S's rows as (n x longest row) column indices and float32 values, shorter rows padded
    with column 0 and value 0 (which adds nothing to a sum), and the column pointers
    0, w, 2w, ... of any leading run of those rows seen as the columns of a CSC matrix."""
    lens = np.diff(S.indptr)
    width = int(lens.max(initial=0))
    idx = np.zeros((S.shape[0], width), dtype=np.int32)
    val = np.zeros((S.shape[0], width), dtype=np.float32)
    filled = np.arange(width) < lens[:, None]  # row-major: CSR order
    idx[filled] = S.indices
    val[filled] = S.data
    kind = np.int32 if (S.shape[0] + 1) * width <= np.iinfo(np.int32).max else np.int64
    pointers = np.arange(S.shape[0] + 1, dtype=kind) * width
    return idx, val, pointers


class ItemWeights:
    """Item-item weights B (dense, or pruned CSR; float32 in memory) with float32 scoring.

    `storage_dtype` is how `to_state` saves the values (float16 halves them on disk).

    Build with `ItemWeights.compact(B, storage_dtype, prune_top_k)`; persist with `to_state` /
    `from_state` (plain numpy arrays, so pickled states stay small).
    """

    def __init__(
        self,
        dense: np.ndarray | None = None,
        sparse: sp.csr_matrix | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        """`dense` (float32, or float16 widened here) or `sparse` (float32 CSR) weights."""
        if (dense is None) == (sparse is None):
            raise ValueError("ItemWeights needs exactly one of dense or sparse")
        self.dense = None if dense is None else np.ascontiguousarray(dense, dtype=np.float32)
        self.sparse = sparse
        self.storage_dtype: StorageDtype = storage_dtype
        self._padded = None if sparse is None else _padded_rows(sparse)

    @classmethod
    def compact(
        cls, B: np.ndarray, storage_dtype: StorageDtype = "float32", prune_top_k: int | None = None
    ) -> ItemWeights:
        """B stored as configured: pruned to `prune_top_k` per row if set, in `storage_dtype`."""
        if storage_dtype not in ("float32", "float16"):
            raise ConfigError(f"storage_dtype must be float32 or float16, got {storage_dtype!r}")
        if storage_dtype == "float16":
            _check_float16(B)
        if prune_top_k is not None:
            S = prune_rows(B, prune_top_k)
            if storage_dtype == "float16":  # in memory float32 of the float16-rounded values
                S.data = S.data.astype(np.float16).astype(np.float32)
            return cls(sparse=S, storage_dtype=storage_dtype)
        dense = np.asarray(B, dtype=np.float32)
        if storage_dtype == "float16":
            dense = dense.astype(np.float16)
        return cls(dense=dense, storage_dtype=storage_dtype)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the arrays `to_state` writes."""
        return sum(v.nbytes for v in self.to_state().values() if isinstance(v, np.ndarray))

    def matmul(self, X: sp.csr_matrix) -> np.ndarray:
        """float32 X @ B for sparse rows X (n x items of B); each row is computed on its own,
        exactly as `row` computes it, so a row's scores never depend on the others."""
        X = sp.csr_matrix(X, dtype=np.float32)
        if self.sparse is not None:
            out = np.empty((X.shape[0], self.sparse.shape[1]), dtype=np.float32)
            for i in range(X.shape[0]):
                lo, hi = X.indptr[i], X.indptr[i + 1]
                out[i] = self.row(X.indices[lo:hi], X.data[lo:hi])
            return out
        assert self.dense is not None
        return np.asarray(X @ self.dense, dtype=np.float32)

    def row(self, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
        """float32 x @ B for one sparse row x (its columns and values): the row `matmul` gives.

        Pruned B: the kept entries of the history's rows, gathered from the padded arrays,
        form the columns of a CSC matrix A (items x len(cols)); x @ B is then A @ values,
        scipy's compiled sparse matrix-vector product, which adds each history row's entries
        into a float32 row in history order. A request touches len(cols) x k values, and no
        index or value array is converted on the way (twice as fast as `np.bincount`, whose
        intp and float64 copies cost more than the sums). Dense B: scipy's
        sparse-times-dense product of the one row (the same per-row loop `matmul` runs).
        """
        values = np.asarray(values, dtype=np.float32)
        if self._padded is not None:
            assert self.sparse is not None
            idx, val, pointers = self._padded
            n = len(cols)
            A = sp.csc_array(
                (val[cols].ravel(), idx[cols].ravel(), pointers[: n + 1]),
                shape=(self.sparse.shape[1], n),
            )
            return np.asarray(A @ values, dtype=np.float32)
        assert self.dense is not None
        x = sp.csr_matrix(
            (values, np.asarray(cols, dtype=np.int32), np.array([0, len(cols)])),
            shape=(1, self.dense.shape[0]),
        )
        return np.asarray(x @ self.dense, dtype=np.float32)[0]

    def to_dense(self) -> np.ndarray:
        """B as a dense float32 array (for inspection and tests)."""
        if self.sparse is not None:
            return np.asarray(self.sparse.toarray(), dtype=np.float32)
        assert self.dense is not None
        return self.dense

    def to_state(self) -> dict[str, Any]:
        """Arrays to persist: `B` (dense) or `B_data`/`B_indices`/`B_indptr`/`B_shape` (CSR)."""
        if self.dense is not None:
            return {"B": self.dense.astype(np.dtype(self.storage_dtype), copy=False)}
        assert self.sparse is not None
        return {
            "B_data": self.sparse.data.astype(np.dtype(self.storage_dtype)),
            "B_indices": self.sparse.indices.astype(np.int32),
            "B_indptr": self.sparse.indptr.astype(np.int64),
            "B_shape": np.asarray(self.sparse.shape, dtype=np.int64),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ItemWeights:
        """Inverse of `to_state` (a state with a dense `B` of any float dtype also loads)."""
        if "B" in state:
            B = np.asarray(state["B"])
            return cls(dense=B, storage_dtype="float16" if B.dtype == np.float16 else "float32")
        data = np.asarray(state["B_data"])
        shape = tuple(int(s) for s in state["B_shape"])
        S = sp.csr_matrix(
            (data.astype(np.float32), state["B_indices"], state["B_indptr"]), shape=shape
        )
        return cls(sparse=S, storage_dtype="float16" if data.dtype == np.float16 else "float32")
