"""Batch-independent products behind every model's scores (`rows_times`, `weighted_sum`).

BLAS matrix products choose kernels and summation order from the batch shape, so the same row
can come out one float step apart in different batches; these helpers must not.
"""

from __future__ import annotations

import numpy as np
import pytest

from abrec.models._util import rows_times, weighted_sum

BATCHES = [(0, 1), (0, 7), (16, 49), (5, 70), (69, 70)]  # (start, stop): alone, first, middle...


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_times_is_row_independent_and_exact(dtype: type) -> None:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((70, 383)).astype(dtype)  # odd sizes hit BLAS edge kernels
    B = rng.standard_normal((1001, 383)).astype(dtype)
    full = rows_times(A, B)
    assert full.dtype == dtype and full.shape == (70, 1001)
    np.testing.assert_allclose(
        full, A.astype(np.float64) @ B.T.astype(np.float64), rtol=1e-4, atol=1e-3
    )
    for start, stop in BATCHES:
        np.testing.assert_array_equal(rows_times(A[start:stop], B), full[start:stop])
    order = rng.permutation(70)
    np.testing.assert_array_equal(rows_times(A[order], B), full[order])
    # a row taken from a view with a different memory offset gives the same bits
    np.testing.assert_array_equal(rows_times(A[3:4, :].copy(), B)[0], full[3])


def test_weighted_sum_is_row_independent_and_exact() -> None:
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((2001, 18))
    w = rng.standard_normal(18)
    full = weighted_sum(Z, w)
    np.testing.assert_allclose(
        full, [sum(z * c for z, c in zip(row, w, strict=True)) for row in Z], rtol=1e-12, atol=1e-12
    )
    for start, stop in [(0, 1), (0, 7), (900, 933), (1937, 2001), (1, 2001)]:
        np.testing.assert_array_equal(weighted_sum(Z[start:stop], w), full[start:stop])


@pytest.mark.parametrize("sorted_indices", [True, False])
def test_take_columns_equals_scipy_fancy_indexing(sorted_indices: bool) -> None:
    """`take_columns` is `X[:, items]` exactly: values, indices, order, shape and empty rows."""
    import scipy.sparse as sp

    from abrec.models._util import take_columns

    rng = np.random.default_rng(3)
    for trial in range(30):
        n_rows, n_cols = int(rng.integers(1, 12)), int(rng.integers(1, 40))
        X = sp.random(n_rows, n_cols, density=float(rng.uniform(0, 0.5)), format="csr", rng=rng)
        X.data = rng.standard_normal(X.nnz).astype(np.float32)
        X = X.astype(np.float32)
        if not sorted_indices:  # reverse each row's entries: a valid, non-canonical CSR
            for r in range(n_rows):
                a, b = X.indptr[r], X.indptr[r + 1]
                X.indices[a:b] = X.indices[a:b][::-1].copy()
                X.data[a:b] = X.data[a:b][::-1].copy()
            X.has_sorted_indices = False
        items = np.flatnonzero(rng.random(n_cols) < 0.6)
        got, want = take_columns(X, items), X[:, items]
        assert got.shape == want.shape, trial
        np.testing.assert_array_equal(got.toarray(), want.toarray())
        if sorted_indices:
            np.testing.assert_array_equal(got.indptr, want.indptr)
            np.testing.assert_array_equal(got.indices, want.indices)
            np.testing.assert_array_equal(got.data, want.data)
