"""Popularity, EASE, item-KNN and ALS: conformance plus checks against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from model_conformance import N_COLD, N_ITEMS, N_USERS, RecommenderConformance, synthetic_data

from abrec.errors import ConfigError
from abrec.models.als import ALS
from abrec.models.base import Recommender, history_matrix, top_k
from abrec.models.ease import EASE, ease_from_gram, ease_weights
from abrec.models.knn import ItemKNN, cosine_topk
from abrec.models.popularity import Popularity


class TestPopularity(RecommenderConformance):
    learns_structure = False

    def make_model(self) -> Recommender:
        return Popularity()

    def test_scores_are_counts(self) -> None:
        inter, items = synthetic_data()
        s = Popularity().fit(inter, items).score(np.array([0]))[0]
        counts = np.bincount(inter.item_idx, minlength=N_ITEMS).astype(np.float64)
        np.testing.assert_allclose(s, counts / counts.max(), rtol=1e-6)


class TestEASE(RecommenderConformance):
    def make_model(self) -> Recommender:
        return EASE(lambda_=5.0)

    def test_closed_form_is_optimal(self) -> None:
        """KKT: (X'X + lambda I) B - X'X is diagonal and diag(B) = 0 (independent check)."""
        inter, items = synthetic_data()
        model = EASE(lambda_=5.0).fit(inter, items)
        assert model._B is not None and model._items is not None
        X = inter.matrix.toarray()[:, model._items].astype(np.float64)
        B = model._B.astype(np.float64)
        G = X.T @ X
        grad = (G + 5.0 * np.eye(len(G))) @ B - G
        off = grad - np.diag(np.diag(grad))
        assert np.abs(off).max() < 1e-4
        assert np.abs(np.diag(B)).max() == 0.0
        np.testing.assert_allclose(
            model.score(np.arange(N_USERS))[:, model._items], X @ B, rtol=1e-4, atol=1e-5
        )

    def test_cold_items_score_zero(self) -> None:
        inter, items = synthetic_data()
        s = EASE(lambda_=5.0).fit(inter, items).score(np.arange(N_USERS))
        assert (s[:, -N_COLD:] == 0).all()

    def test_bad_lambda(self) -> None:
        with pytest.raises(ConfigError, match="lambda_"):
            EASE(lambda_=-1.0)


class TestItemKNN(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ItemKNN(k=10, shrinkage=1.0)

    def test_full_neighbourhood_equals_dense_cosine(self) -> None:
        inter, items = synthetic_data()
        X = inter.matrix.toarray().astype(np.float64)
        norms = np.linalg.norm(X, axis=0)
        ref = (X.T @ X) / (np.outer(norms, norms) + 2.0 + 1e-12)
        np.fill_diagonal(ref, 0.0)
        S = cosine_topk(inter.matrix, k=N_ITEMS, shrinkage=2.0, block=7).toarray()
        np.testing.assert_allclose(S, ref, rtol=1e-5, atol=1e-7)
        model = ItemKNN(k=N_ITEMS, shrinkage=2.0).fit(inter, items)
        np.testing.assert_allclose(model.score(np.arange(N_USERS)), X @ ref, rtol=1e-4, atol=1e-6)

    def test_top_k_pruning_keeps_largest_per_column(self) -> None:
        inter, _ = synthetic_data()
        full = cosine_topk(inter.matrix, k=N_ITEMS, shrinkage=0.0).toarray()
        pruned = cosine_topk(inter.matrix, k=3, shrinkage=0.0, block=5).toarray()
        assert ((pruned > 0).sum(axis=0) <= 3).all()
        for j in range(N_ITEMS - N_COLD):
            kept = np.flatnonzero(pruned[:, j])
            np.testing.assert_allclose(pruned[kept, j], full[kept, j], rtol=1e-6)
            if len(kept):
                assert full[kept, j].min() >= np.sort(full[:, j])[-3] - 1e-7

    def test_bad_k(self) -> None:
        with pytest.raises(ConfigError):
            ItemKNN(k=0)


class TestALS(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ALS(factors=8, iterations=10, regularization=0.05, alpha=2.0, seed=3)

    def make_history_model(self) -> Recommender | None:
        return None  # fold-in is one exact step, not the trained factors (see test below)

    def test_fold_in_is_exact_least_squares_step(self) -> None:
        """Against the closed form x = (V'V + reg I + V'(C-I)V)^-1 V'C p, C = alpha * history."""
        inter, items = synthetic_data()
        model = self.make_model().fit(inter, items)
        assert isinstance(model, ALS) and model._V is not None
        V = model._V.astype(np.float64)
        hists = [np.array([0, 2, 4, 6]), np.array([1, 3, N_ITEMS - 1])]
        expected = []
        for h in hists:
            A = V.T @ V + 0.05 * np.eye(8) + (2.0 - 1.0) * V[h].T @ V[h]
            expected.append(np.linalg.solve(A, 2.0 * V[h].sum(0)))
        ref = np.array(expected)
        np.testing.assert_allclose(
            model.fold_in(history_matrix(hists, N_ITEMS)), ref, rtol=1e-3, atol=1e-4
        )
        np.testing.assert_allclose(model.score_history(hists), ref @ V.T, rtol=1e-3, atol=1e-4)

    def test_fold_in_of_known_user_ranks_like_trained_factors(self) -> None:
        inter, items = synthetic_data()
        model = self.make_model().fit(inter, items)
        train = inter.matrix.tocsr()
        users = np.arange(N_USERS)
        hists = [train.indices[train.indptr[u] : train.indptr[u + 1]] for u in users]
        a, b = model.score_history(hists), model.score(users)
        corr = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b, strict=True)]
        assert np.median(corr) > 0.9

    def test_separates_train_positives(self) -> None:
        """Training AUC (positives vs non-interacted warm items) is high."""
        inter, items = synthetic_data()
        s = self.make_model().fit(inter, items).score(np.arange(N_USERS))[:, : N_ITEMS - N_COLD]
        X = inter.matrix.toarray()[:, : N_ITEMS - N_COLD] > 0
        pos, neg = s[X], s[~X]
        auc = (pos[:, None] > neg[None, :]).mean()
        assert auc > 0.85

    def test_seed_changes_factors(self) -> None:
        inter, items = synthetic_data()
        a = ALS(factors=8, iterations=2, seed=1).fit(inter, items).score(np.array([0]))
        b = ALS(factors=8, iterations=2, seed=2).fit(inter, items).score(np.array([0]))
        assert not np.array_equal(a, b)


def test_top_k_matches_stable_argsort() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(20, 30)).astype(np.float32)
    for k in (1, 5, 30, 40):
        items, vals = top_k(scores, k)
        ref = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, 30)]
        np.testing.assert_array_equal(items, ref)
        np.testing.assert_array_equal(vals, np.take_along_axis(scores, ref, axis=1))


@pytest.mark.parametrize("shape", [(20, 60), (60, 20)])
def test_ease_weights_woodbury_and_direct_agree_with_inverse(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(4)
    A = (rng.random(shape) < 0.2).astype(np.float64)
    G = A.T @ A + 3.0 * np.eye(shape[1])
    P = np.linalg.inv(G)
    ref = P / -np.diag(P)
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(ease_weights(A, 3.0), ref, atol=1e-6)
    np.testing.assert_allclose(ease_weights(sp.csr_matrix(A), 3.0), ref, atol=1e-6)
    np.testing.assert_allclose(ease_from_gram(A.T @ A, 3.0), ref, atol=1e-6)
