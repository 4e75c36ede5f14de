"""Semantic EASE (L3AE): conformance and checks against per-column constrained solves."""

from __future__ import annotations

import numpy as np
import pytest
from model_conformance import (
    N_COLD,
    N_ITEMS,
    N_USERS,
    HashingEncoder,
    RecommenderConformance,
    assert_cold_items_follow_text,
    synthetic_data,
)

from abrec.errors import ConfigError
from abrec.models.base import Recommender
from abrec.models.ease import EASE, centred_embeddings, ease_weights
from abrec.models.l3ae import L3AE, l3ae_weights, semantic_weights


def reference_weights(G: np.ndarray, lambda_: float, beta: float, S: np.ndarray) -> np.ndarray:
    """argmin ||X - XB||^2 + lambda ||B||^2 + beta ||B - S||^2, diag(B) = 0, column by column.

    With B_jj = 0 fixed, column j's remaining entries solve the unconstrained normal equations
    (G_{-j,-j} + (lambda + beta) I) b = G_{-j,j} + beta S_{-j,j}.
    """
    n = G.shape[0]
    B = np.zeros((n, n))
    for j in range(n):
        rest = np.flatnonzero(np.arange(n) != j)
        A = G[np.ix_(rest, rest)] + (lambda_ + beta) * np.eye(n - 1)
        B[rest, j] = np.linalg.solve(A, G[rest, j] + beta * S[rest, j])
    return B


def random_problem(
    n_users: int, n_items: int, dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < 0.3).astype(np.float64)
    E = rng.normal(size=(n_items, dim))
    return X, E / np.linalg.norm(E, axis=1, keepdims=True)


def close(got: np.ndarray, want: np.ndarray, rel: float = 1e-5) -> None:
    """Entry-wise within `rel` of the largest reference entry."""
    assert np.abs(got - want).max() <= rel * max(np.abs(want).max(), 1e-12)


class TestL3AE(RecommenderConformance):
    def make_model(self) -> Recommender:
        return L3AE(lambda_=5.0, beta=3.0, lambda_s=0.5, encoder=HashingEncoder())

    def test_fit_matches_reference_on_the_catalogue(self) -> None:
        """The model's B is the per-column optimum for its (centred) item vectors."""
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = L3AE(lambda_=5.0, beta=3.0, lambda_s=0.5, encoder=enc).fit(inter, items)
        E = centred_embeddings(enc.encode(list(items.text)))
        X = inter.matrix.toarray().astype(np.float64)
        S = reference_weights(E @ E.T, 0.5, 0.0, np.zeros((N_ITEMS, N_ITEMS)))
        B = reference_weights(X.T @ X, 5.0, 3.0, S)
        assert model._B is not None and model._B.dtype == np.float32
        close(model._B, B)
        np.testing.assert_allclose(model.score(np.arange(N_USERS)), X @ B, rtol=1e-4, atol=1e-5)

    def test_cold_items_follow_text(self) -> None:
        """Cold items get non-zero scores, higher from users of their own (text) cluster."""
        inter, items = synthetic_data()
        model = L3AE(lambda_=5.0, beta=20.0, lambda_s=2.0, encoder=HashingEncoder())
        s = model.fit(inter, items).score(np.arange(N_USERS))
        assert_cold_items_follow_text(s, margin=0.03, share=0.75)

    def test_uncentred_vectors(self) -> None:
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = L3AE(lambda_=5.0, beta=3.0, lambda_s=0.5, centre=False, encoder=enc)
        model.fit(inter, items)
        E = enc.encode(list(items.text)).astype(np.float64)
        X = inter.matrix.toarray().astype(np.float64)
        S = semantic_weights(E, 0.5)
        assert model._B is not None
        close(model._B, reference_weights(X.T @ X, 5.0, 3.0, S))

    def test_beta_zero_is_ease_on_all_items(self) -> None:
        inter, items = synthetic_data()
        model = L3AE(lambda_=5.0, beta=0.0, encoder=HashingEncoder()).fit(inter, items)
        users = np.arange(N_USERS)
        ease = EASE(lambda_=5.0).fit(inter, items).score(users)
        np.testing.assert_allclose(model.score(users), ease, rtol=1e-4, atol=1e-6)
        X = inter.matrix.toarray()
        assert model._B is not None
        close(model._B, ease_weights(X, 5.0), rel=1e-5)  # cold columns too: exactly zero
        assert (model._B[:, -N_COLD:] == 0).all()

    def test_bad_config(self) -> None:
        with pytest.raises(ConfigError, match="lambda_s"):
            L3AE(lambda_s=0.0)
        with pytest.raises(ConfigError, match="beta"):
            L3AE(beta=-1.0)


@pytest.mark.parametrize(
    ("n_users", "n_items", "dim"),
    [(12, 30, 5), (30, 12, 5), (30, 12, 40), (5, 12, 40)],
    ids=["woodbury", "dense", "dense-wide-text", "woodbury-wide-text"],
)
def test_weights_match_per_column_solves(n_users: int, n_items: int, dim: int) -> None:
    """Closed form (Woodbury or dense P) vs one constrained linear solve per column."""
    X, E = random_problem(n_users, n_items, dim)
    S = reference_weights(E @ E.T, 0.7, 0.0, np.zeros((n_items, n_items)))
    close(semantic_weights(E, 0.7), S, rel=1e-10)
    close(semantic_weights(E, 0.7), ease_weights(E.T, 0.7), rel=1e-6)  # EASE on E E^T
    for lambda_, beta in ((4.0, 2.5), (0.5, 9.0), (3.0, 0.0)):
        B = l3ae_weights(X, E, lambda_, beta, 0.7)
        assert B.dtype == np.float32 and (np.diag(B) == 0).all()
        close(B, reference_weights(X.T @ X, lambda_, beta, S))


def test_block_assembly_covers_every_column(monkeypatch: pytest.MonkeyPatch) -> None:
    """B assembled in blocks narrower than the catalogue equals the one-block result."""
    import abrec.models.l3ae as l3ae

    X, E = random_problem(9, 23, 4, seed=3)
    whole = l3ae_weights(X, E, 2.0, 3.0, 0.4)
    monkeypatch.setattr(l3ae, "_BLOCK", 5)
    np.testing.assert_array_equal(l3ae_weights(X, E, 2.0, 3.0, 0.4), whole)


def test_large_beta_tends_to_s() -> None:
    X, E = random_problem(12, 30, 5, seed=1)
    S = semantic_weights(E, 0.7)
    dist = [np.abs(l3ae_weights(X, E, 4.0, b, 0.7) - S).max() for b in (1.0, 1e2, 1e4, 1e6)]
    assert all(np.diff(dist) < 0) and dist[-1] < 1e-4 * np.abs(S).max()
