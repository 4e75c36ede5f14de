"""Compact EASE-family weights: float16 storage, top-k pruning, persistence (abrec.models.compact)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from model_conformance import N_USERS, HashingEncoder, RecommenderConformance, synthetic_data

from abrec.data.types import Interactions
from abrec.errors import ConfigError
from abrec.models.base import Recommender
from abrec.models.compact import FLOAT16_ABS_ERROR, FLOAT16_REL_ERROR, ItemWeights, prune_rows
from abrec.models.ease import EASE
from abrec.models.l3ae import L3AE
from abrec.models.rerank import CFReranker, LTRReranker


def reference_prune(B: np.ndarray, k: int) -> np.ndarray:
    """Dense float64 B keeping, per row, the k largest |value| (stable sort: lower column first)."""
    out = np.zeros_like(B, dtype=np.float64)
    for i, row in enumerate(B):
        keep = np.argsort(-np.abs(row.astype(np.float64)), kind="stable")[:k]
        out[i, keep] = row[keep]
    return out


class TestEASEFloat16(RecommenderConformance):
    def make_model(self) -> Recommender:
        return EASE(lambda_=5.0, storage_dtype="float16")


class TestEASEPruned(RecommenderConformance):
    def make_model(self) -> Recommender:
        return EASE(lambda_=5.0, prune_top_k=16, storage_dtype="float16")  # half of each row


class TestCFRerankerCompact(RecommenderConformance):
    def make_model(self) -> Recommender:
        return CFReranker(n_cf=10, lambda_=5.0, storage_dtype="float16", prune_top_k=8)

    def make_history_model(self) -> Recommender | None:
        return None  # as CFReranker: features use recency


class TestPruneRows:
    @pytest.mark.parametrize("k", [1, 3, 7, 20, 50])
    def test_keeps_exactly_the_top_k_by_magnitude(self, k: int) -> None:
        rng = np.random.default_rng(0)
        # small integers: many ties in |value| (and +v/-v pairs), so tie-breaking is exercised
        B = rng.integers(-4, 5, size=(40, 20)).astype(np.float32)
        P = prune_rows(B, k)
        assert isinstance(P, sp.csr_matrix) and P.dtype == np.float32
        np.testing.assert_array_equal(P.toarray(), reference_prune(B, k))
        assert (np.diff(P.indptr) <= min(k, 20)).all()
        assert (P.data != 0).all()  # exact zeros are not stored
        assert P.has_sorted_indices

    def test_random_continuous_values(self) -> None:
        B = np.random.default_rng(1).standard_normal((1100, 300)).astype(np.float32)  # > 1 block
        np.testing.assert_array_equal(prune_rows(B, 25).toarray(), reference_prune(B, 25))
        assert prune_rows(B, 25).nnz == 1100 * 25

    def test_bad_k(self) -> None:
        with pytest.raises(ConfigError, match="prune_top_k"):
            prune_rows(np.eye(3, dtype=np.float32), 0)


def _fit(**params: object) -> tuple[EASE, Interactions]:
    inter, items = synthetic_data()
    return EASE(lambda_=5.0, **params).fit(inter, items), inter  # type: ignore[arg-type]


def test_float16_scores_within_the_documented_bound() -> None:
    full, inter = _fit()
    half, _ = _fit(storage_dtype="float16")
    users = np.arange(N_USERS)
    s32 = full.score(users).astype(np.float64)
    s16 = half.score(users).astype(np.float64)
    assert half.weights is not None and half.weights.dense is not None
    assert half.weights.to_state()["B"].dtype == np.float16  # saved as float16
    X = inter.matrix.toarray().astype(np.float64)[:, full._items]
    B = np.abs(full._B.astype(np.float64))  # type: ignore[union-attr]
    bound = X @ (FLOAT16_REL_ERROR * B + FLOAT16_ABS_ERROR)
    summation = 1e-6 * (X @ B) + 1e-7  # float32 accumulation of both models
    diff = np.abs(s16 - s32)[:, full._items]
    assert (diff <= bound + summation).all()
    assert diff.max() > 0  # the rounding is real: the bound is not vacuous
    # the stored values are the float32 ones rounded to nearest
    np.testing.assert_array_equal(half._B, full._B.astype(np.float16).astype(np.float32))  # type: ignore[union-attr]


def test_pruned_scores_are_history_times_the_reference_pruned_matrix() -> None:
    full, inter = _fit()
    pruned, _ = _fit(prune_top_k=5)
    ref = reference_prune(full._B, 5)  # type: ignore[arg-type]
    X = inter.matrix.toarray().astype(np.float64)[:, full._items]
    got = pruned.score(np.arange(N_USERS))[:, full._items]
    np.testing.assert_allclose(got, X @ ref, rtol=1e-6, atol=1e-6)
    # history scoring goes through the same weights
    hist = [np.flatnonzero(inter.matrix[u].toarray().ravel()) for u in range(3)]
    np.testing.assert_array_equal(pruned.score_history(hist), pruned.score(np.arange(3)))


def test_pruned_float16_values_are_rounded() -> None:
    full, _ = _fit()
    both, _ = _fit(prune_top_k=5, storage_dtype="float16")
    ref = reference_prune(full._B, 5).astype(np.float32)  # type: ignore[arg-type]
    np.testing.assert_array_equal(both._B, ref.astype(np.float16).astype(np.float32))


def test_recommend_excludes_seen_items() -> None:
    model, inter = _fit(prune_top_k=4, storage_dtype="float16")
    items, _ = model.recommend(np.arange(N_USERS), k=10)
    seen = inter.matrix.toarray() > 0
    for u in range(N_USERS):
        assert not seen[u, items[u]].any()


@pytest.mark.parametrize(
    "params",
    [
        {"storage_dtype": "float16"},
        {"prune_top_k": 5},
        {"prune_top_k": 5, "storage_dtype": "float16"},
    ],
)
def test_save_load_round_trip(tmp_path: Path, params: dict[str, object]) -> None:
    model, _ = _fit(**params)
    path = model.save(tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    for key, value in params.items():
        assert meta["params"][key] == value
    loaded = Recommender.load(path)
    assert isinstance(loaded, EASE) and loaded.get_config() == model.get_config()
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    with open(path / "state.pkl", "rb") as fh:
        state = pickle.load(fh)
    want = np.float16 if params.get("storage_dtype") == "float16" else np.float32
    key = "B_data" if "prune_top_k" in params else "B"
    assert state[key].dtype == want


def test_size_on_disk() -> None:
    """float16 halves the stored matrix; top-k stores k values + k int32 columns per row."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((500, 500)).astype(np.float32)
    dense32 = ItemWeights.compact(B).stored_bytes
    dense16 = ItemWeights.compact(B, "float16").stored_bytes
    assert dense32 == 500 * 500 * 4 and dense16 == dense32 // 2
    pruned16 = ItemWeights.compact(B, "float16", 50).stored_bytes
    assert pruned16 == 500 * 50 * (2 + 4) + 501 * 8 + 2 * 8
    assert len(pickle.dumps(ItemWeights.compact(B, "float16").to_state())) < 0.51 * dense32


def test_legacy_float32_state_loads() -> None:
    model, _ = _fit()
    state = model.get_state()
    assert set(state) >= {"items", "B"}
    state["B"] = state["B"].astype(np.float64)  # any float dense B loads (as float32)
    other = EASE(lambda_=5.0).set_state(state)
    assert other.weights is not None and other.weights.dense is not None
    assert other.weights.dense.dtype == np.float32
    np.testing.assert_array_equal(other.score(np.arange(5)), model.score(np.arange(5)))


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="storage_dtype"):
        EASE(storage_dtype="int8")
    with pytest.raises(ConfigError, match="prune_top_k"):
        EASE(prune_top_k=0)
    with pytest.raises(ConfigError, match="float16 cannot hold"):
        ItemWeights.compact(np.array([[0.0, 1e6], [1.0, 0.0]]), "float16")


def test_l3ae_and_ltr_pass_the_setting_to_their_weights(tmp_path: Path) -> None:
    inter, items = synthetic_data()
    enc = HashingEncoder()
    l3 = L3AE(lambda_=5.0, beta=3.0, prune_top_k=6, storage_dtype="float16", encoder=enc)
    l3.fit(inter, items)
    assert l3.weights is not None and l3.weights.sparse is not None
    assert (np.diff(l3.weights.sparse.indptr) <= 6).all()
    loaded = Recommender.load(l3.save(tmp_path / "l3"))
    np.testing.assert_array_equal(loaded.score(np.arange(4)), l3.score(np.arange(4)))
    ltr = LTRReranker(n_cf=10, n_lm=5, lambda_=5.0, prune_top_k=6, encoder=enc)
    ltr.fit(inter, items)
    for part in (ltr._gen.ease, ltr._gen.tease):
        assert part is not None and part.weights is not None and part.weights.sparse is not None


@pytest.mark.parametrize(
    "params", [{}, {"storage_dtype": "float16"}, {"prune_top_k": 5}, {"prune_top_k": 40}]
)
def test_score_user_is_the_batch_row_bit_for_bit(params: dict[str, object]) -> None:
    """The serving path (`score_user`, `ItemWeights.row`) gives exactly the numbers of
    `score` over any batch, dense or pruned, binary or weighted histories."""
    model, _ = _fit(**params)
    batch = model.score(np.arange(N_USERS))
    for u in range(N_USERS):
        np.testing.assert_array_equal(model.score_user(u), batch[u])
    np.testing.assert_array_equal(model.score_user(-1), model.score(np.array([-1]))[0])
    w = model.weights
    assert w is not None
    rng = np.random.default_rng(1)
    X = sp.random(7, w.to_dense().shape[0], density=0.2, format="csr", random_state=2)
    X.data = rng.uniform(0.1, 3.0, X.nnz).astype(np.float32)
    full = w.matmul(X)
    for i in range(X.shape[0]):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        np.testing.assert_array_equal(w.row(X.indices[lo:hi], X.data[lo:hi]), full[i])
    # and the numbers are X @ B (float64 reference, float32 rounding)
    ref = X.toarray() @ w.to_dense().astype(np.float64)
    np.testing.assert_allclose(full, ref, rtol=1e-5, atol=1e-6)
