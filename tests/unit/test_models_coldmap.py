"""Text -> item factor ridge mapping (vs scikit-learn) and ALS with mapped cold items."""

from __future__ import annotations

from pathlib import Path

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
from sklearn.linear_model import Ridge

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.models.als import ALS
from abrec.models.base import Recommender
from abrec.models.coldmap import ALSText, RidgeMapping

ALS_PARAMS = {"factors": 8, "iterations": 10, "regularization": 0.05, "alpha": 2.0, "seed": 3}


@pytest.mark.parametrize(("n", "d", "k"), [(40, 6, 3), (10, 25, 4)], ids=["tall", "wide"])
@pytest.mark.parametrize("alpha", [0.01, 1.0, 30.0])
def test_ridge_matches_sklearn(n: int, d: int, k: int, alpha: float) -> None:
    rng = np.random.default_rng(n + d)
    E = rng.normal(size=(n, d)) + 2.0  # off-centre inputs: the intercept matters
    V = E @ rng.normal(size=(d, k)) + rng.normal(size=(n, k)) - 1.5
    mapping = RidgeMapping.fit(E, V, alpha)
    ref = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(E, V)
    assert mapping.W.shape == (d + 1, k)
    np.testing.assert_allclose(mapping.W[:-1], ref.coef_.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(mapping.W[-1], ref.intercept_, rtol=1e-9, atol=1e-10)
    E_new = rng.normal(size=(7, d))
    np.testing.assert_allclose(mapping.predict(E_new), ref.predict(E_new), rtol=1e-9, atol=1e-10)


def test_ridge_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        RidgeMapping.fit(np.ones((3, 2)), np.ones((3, 1)), 0.0)
    with pytest.raises(ValueError, match="rows"):
        RidgeMapping.fit(np.ones((3, 2)), np.ones((4, 1)), 1.0)


class TestALSText(RecommenderConformance):
    def make_model(self) -> Recommender:
        return ALSText(**ALS_PARAMS, ridge_alpha=0.5, encoder=HashingEncoder())

    def make_history_model(self) -> Recommender | None:
        return None  # fold-in is one exact step, as for ALS

    def test_warm_items_score_exactly_like_als(self) -> None:
        inter, items = synthetic_data()
        users = np.array([-1, *range(N_USERS)])
        als = ALS(**ALS_PARAMS).fit(inter, items)
        model = self.make_model().fit(inter, items)
        warm = slice(0, N_ITEMS - N_COLD)
        np.testing.assert_array_equal(model.score(users)[:, warm], als.score(users)[:, warm])
        hists = [np.array([0, 3, 5]), np.array([1, 2, N_ITEMS - 1])]
        np.testing.assert_array_equal(
            model.score_history(hists)[:, warm], als.score_history(hists)[:, warm]
        )
        assert (als.score(users[1:])[:, -N_COLD:] == 0).all()  # what the mapping replaces

    def test_cold_factors_are_ridge_predictions(self) -> None:
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = ALSText(**ALS_PARAMS, ridge_alpha=0.5, encoder=enc).fit(inter, items)
        als = ALS(**ALS_PARAMS).fit(inter, items)
        assert als._V is not None and als._U is not None
        E = enc.encode(list(items.text)).astype(np.float64)
        warm = np.arange(N_ITEMS - N_COLD)
        ref = Ridge(alpha=0.5, fit_intercept=True, solver="cholesky").fit(E[warm], als._V[warm])
        V_cold = ref.predict(E[-N_COLD:])
        expected = als._U.astype(np.float64) @ V_cold.T
        got = model.score(np.arange(N_USERS))[:, -N_COLD:]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)

    def test_cold_items_ranked_by_cluster(self) -> None:
        """Users of cluster c score cold cluster-c items above the other cluster's, on average."""
        inter, items = synthetic_data()
        s = self.make_model().fit(inter, items).score(np.arange(N_USERS))
        assert_cold_items_follow_text(s, margin=0.1, share=0.9)

    def test_no_cold_items_needs_no_encoding(self) -> None:
        inter, items = synthetic_data()
        n_warm = N_ITEMS - N_COLD
        warm_inter = Interactions(
            inter.user_idx, inter.item_idx, inter.user_ids, items.item_ids[:n_warm]
        )
        warm_items = ItemCatalog(items.item_ids[:n_warm], items.text[:n_warm])
        enc = HashingEncoder()
        model = ALSText(**ALS_PARAMS, encoder=enc).fit(warm_inter, warm_items)
        assert enc.calls == 0
        als = ALS(**ALS_PARAMS).fit(warm_inter, warm_items)
        users = np.arange(N_USERS)
        np.testing.assert_array_equal(model.score(users), als.score(users))

    def test_loaded_model_needs_no_encoder(self, fitted: Recommender, tmp_path: Path) -> None:
        fitted.save(tmp_path / "als_text")
        loaded = Recommender.load(tmp_path / "als_text")
        assert isinstance(loaded, ALSText) and loaded.encoder is None
        users = np.arange(N_USERS)
        np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
