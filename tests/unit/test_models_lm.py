"""Language-model and hybrid recommenders, the registry and normalisation helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from model_conformance import (
    N_COLD,
    N_ITEMS,
    N_USERS,
    HashingEncoder,
    RecommenderConformance,
    synthetic_data,
)

from abrec.data.types import Interactions
from abrec.errors import ConfigError, DataError
from abrec.models import MODEL_KINDS, build_model, needs_encoder
from abrec.models._util import recency_weights, row_normalize
from abrec.models.base import Recommender
from abrec.models.ease import EASE, TextEASE
from abrec.models.hybrid import Hybrid, text_neighbours
from abrec.models.lm import EmbeddingSimilarity, history_profiles


class TestEmbeddingSimilarity(RecommenderConformance):
    def make_model(self) -> Recommender:
        return EmbeddingSimilarity(half_life=3.0, encoder=HashingEncoder())

    def make_history_model(self) -> Recommender:
        return EmbeddingSimilarity(half_life=None, encoder=HashingEncoder())

    def test_history_profile_is_plain_mean(self) -> None:
        """Cold-user path: cosine to the unweighted mean of the history's text embeddings."""
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = EmbeddingSimilarity(half_life=2.0, encoder=enc).fit(inter, items)
        E = enc.encode(list(items.text)).astype(np.float64)
        hist = np.array([3, 7, N_ITEMS - 1])  # includes a cold item
        prof = E[hist].mean(0)
        expected = E @ (prof / np.linalg.norm(prof))
        got = model.score_history([hist])[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    def test_profile_is_recency_weighted_mean(self) -> None:
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = EmbeddingSimilarity(half_life=2.0, encoder=enc).fit(inter, items)
        E = enc.encode(list(items.text)).astype(np.float64)
        u = 5
        assert inter.timestamps is not None
        rows = np.flatnonzero(inter.user_idx == u)
        rows = rows[np.argsort(inter.timestamps[rows], kind="stable")]
        w = 0.5 ** ((len(rows) - 1 - np.arange(len(rows))) / 2.0)
        prof = (w[:, None] * E[inter.item_idx[rows]]).sum(0)
        prof /= np.linalg.norm(prof)
        np.testing.assert_allclose(model.score(np.array([u]))[0], E @ prof, rtol=1e-5, atol=1e-6)

    def test_cold_items_get_text_scores(self) -> None:
        inter, items = synthetic_data()
        s = self.make_model().fit(inter, items).score(np.arange(N_USERS))
        assert np.abs(s[:, -N_COLD:]).sum() > 0

    def test_loaded_model_needs_no_encoder(self, fitted: Recommender, tmp_path: Path) -> None:
        fitted.save(tmp_path / "lm")
        loaded = Recommender.load(tmp_path / "lm")
        assert isinstance(loaded, EmbeddingSimilarity) and loaded.encoder is None
        np.testing.assert_array_equal(loaded.score(np.array([1])), fitted.score(np.array([1])))

    def test_bad_encoder_output(self) -> None:
        class Broken:
            def encode(self, texts: list[str]) -> np.ndarray:
                return np.zeros((len(texts) - 1, 4))

        with pytest.raises(DataError, match="one row per item"):
            EmbeddingSimilarity(encoder=Broken()).fit(*synthetic_data())


class TestTextEASE(RecommenderConformance):
    def make_model(self) -> Recommender:
        return TextEASE(lambda_=5.0, beta=3.0, encoder=HashingEncoder())

    def test_closed_form_with_text_prior_is_optimal(self) -> None:
        """KKT on G = X'X + beta E~E~': (G + lambda I) B - G is diagonal, diag(B) = 0."""
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = TextEASE(lambda_=5.0, beta=3.0, encoder=enc).fit(inter, items)
        E = enc.encode(list(items.text)).astype(np.float64)
        E -= E.mean(0)
        E /= np.linalg.norm(E, axis=1, keepdims=True)
        X = inter.matrix.toarray().astype(np.float64)
        G = X.T @ X + 3.0 * E @ E.T
        assert model._B is not None
        B = model._B.astype(np.float64)
        grad = (G + 5.0 * np.eye(N_ITEMS)) @ B - G
        assert np.abs(grad - np.diag(np.diag(grad))).max() < 1e-4
        assert (np.diag(B) == 0).all()
        s = model.score(np.arange(N_USERS))
        np.testing.assert_allclose(s, X @ B, rtol=1e-4, atol=1e-5)
        assert np.abs(s[:, -N_COLD:]).min() > 0  # cold items are scored through their text

    def test_beta_zero_is_ease(self) -> None:
        inter, items = synthetic_data()
        a = TextEASE(lambda_=5.0, beta=0.0, encoder=HashingEncoder()).fit(inter, items)
        b = EASE(lambda_=5.0).fit(inter, items)
        users = np.arange(N_USERS)
        np.testing.assert_allclose(a.score(users), b.score(users), rtol=1e-4, atol=1e-6)


class TestHybrid(RecommenderConformance):
    def make_model(self) -> Recommender:
        return Hybrid(
            cf="ease",
            cf_params={"lambda_": 5.0},
            lm_params={"half_life": 3.0},
            lm_weight=0.3,
            encoder=HashingEncoder(),
        )

    def make_history_model(self) -> Recommender:
        return Hybrid(
            cf="ease",
            cf_params={"lambda_": 5.0},
            lm_params={"half_life": None},
            lm_weight=0.3,
            encoder=HashingEncoder(),
        )

    def test_history_blend_uses_components_history_scores(self) -> None:
        """With recency, the hybrid's history scores are the blend of its parts' history scores."""
        inter, items = synthetic_data()
        model = self.make_model().fit(inter, items)
        assert isinstance(model, Hybrid)
        hists = [np.array([0, 2, 9]), np.array([1, 5, 11, 13])]
        expected = model._blend(
            model.cf_model.score_history(hists), model.lm_model.score_history(hists)
        )
        np.testing.assert_array_equal(model.score_history(hists), expected)
        assert Hybrid(cf="als", encoder=HashingEncoder()).supports_history

    def test_matches_hand_computed_blend(self) -> None:
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = Hybrid(
            cf="ease",
            cf_params={"lambda_": 5.0},
            lm_params={"half_life": 3.0},
            lm_weight=0.4,
            cold_neighbors=3,
            cold_weight=2.0,
            cold_shift=-0.5,
            encoder=enc,
        ).fit(inter, items)
        cf = EASE(lambda_=5.0).fit(inter, items).score(np.arange(N_USERS)).astype(np.float64)
        lm = EmbeddingSimilarity(half_life=3.0, encoder=enc).fit(inter, items)
        lms = lm.score(np.arange(N_USERS)).astype(np.float64)
        warm = np.arange(N_ITEMS) < N_ITEMS - N_COLD
        zc = scipy.stats.zscore(cf[:, warm], axis=1)
        zl = (lms - lms[:, warm].mean(1, keepdims=True)) / lms[:, warm].std(1, keepdims=True)
        E = lm.item_embeddings
        assert E is not None
        expected = np.empty((N_USERS, N_ITEMS))
        expected[:, warm] = zc + 0.4 * zl[:, warm]
        for j in np.flatnonzero(~warm):
            sim = E[warm] @ E[j]
            nn = np.argsort(-sim, kind="stable")[:3]
            wts = np.maximum(sim[nn], 0)
            pred = zc[:, nn] @ wts / wts.sum() if wts.sum() > 0 else 0.0
            expected[:, j] = 2.0 * pred + 0.4 * zl[:, j] - 0.5
        np.testing.assert_allclose(model.score(np.arange(N_USERS)), expected, rtol=1e-4, atol=1e-4)

    def test_cold_items_can_be_recommended(self) -> None:
        inter, items = synthetic_data()
        model = Hybrid(
            cf="ease", cf_params={"lambda_": 5.0}, cold_shift=3.0, encoder=HashingEncoder()
        )
        top, _ = model.fit(inter, items).recommend(np.arange(N_USERS), k=5)
        assert (top >= N_ITEMS - N_COLD).any()
        assert (
            EASE(lambda_=5.0).fit(inter, items).score(np.arange(N_USERS))[:, -N_COLD:] == 0
        ).all()

    def test_minmax_and_other_cf(self) -> None:
        inter, items = synthetic_data()
        model = Hybrid(
            cf="itemknn", cf_params={"k": 5}, normalize="minmax", encoder=HashingEncoder()
        )
        s = model.fit(inter, items).score(np.arange(N_USERS))
        assert np.isfinite(s).all()
        assert model.cf_model.params() == {"k": 5, "shrinkage": 0.0}
        assert model.params()["cf_params"] == {"k": 5, "shrinkage": 0.0}  # stored complete

    def test_text_ease_component_shares_encoder(self, tmp_path: Path) -> None:
        inter, items = synthetic_data()
        enc = HashingEncoder()
        model = Hybrid(cf="text_ease", cf_params={"lambda_": 5.0, "beta": 2.0}, encoder=enc)
        s = model.fit(inter, items).score(np.arange(N_USERS))
        assert np.isfinite(s).all() and enc.calls == 2
        assert isinstance(model.cf_model, TextEASE) and model.cf_model.config.beta == 2.0
        assert model.cf_model.encoder is enc and model.lm_model.encoder is enc
        model.save(tmp_path / "h")
        loaded = Recommender.load(tmp_path / "h")
        np.testing.assert_array_equal(loaded.score(np.arange(N_USERS)), s)
        assert isinstance(loaded, Hybrid)
        # the parts share the hybrid's training matrix (saved once)
        assert loaded.cf_model.train_matrix is loaded.train_matrix
        assert loaded.lm_model.train_matrix is loaded.train_matrix

    def test_defaults_are_the_tuned_text_ease_blend(self) -> None:
        model = Hybrid(encoder=HashingEncoder())
        assert model.params()["cf"] == "text_ease"
        assert model.params()["cf_params"] == {
            "lambda_": 500.0,
            "beta": 20.0,
            "storage_dtype": "float32",
        }
        assert model.lm_model.config.half_life == 5.0
        assert Hybrid(cf="ease").config.cf_params == {"lambda_": 500.0, "storage_dtype": "float32"}

    def test_bad_config(self) -> None:
        with pytest.raises(ConfigError, match="normalize"):
            Hybrid(normalize="rank")
        with pytest.raises(ConfigError, match="cf: must be a collaborative model kind"):
            Hybrid(cf="lm")
        with pytest.raises(ConfigError, match="cf: must be a collaborative"):
            Hybrid(cf="nope")
        with pytest.raises(ConfigError, match=r"cf_params: .*lambda_"):
            Hybrid(cf="ease", cf_params={"lambda_": "lots"})
        with pytest.raises(ConfigError, match=r"cf_params: .*lam.*unknown key"):
            Hybrid(cf="ease", cf_params={"lam": 3})
        with pytest.raises(ConfigError, match=r"lm_params.half_life"):
            Hybrid(lm_params={"half_life": -1})
        with pytest.raises(ConfigError, match="cold_shift"):
            Hybrid(cold_shift=float("nan"))


def test_text_neighbours_rows_are_stochastic() -> None:
    rng = np.random.default_rng(1)
    E = rng.normal(size=(30, 8))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    T = text_neighbours(E, np.arange(25, 30), np.arange(25), k=4, block=2).toarray()
    for r, j in enumerate(range(25, 30)):
        sim = E[:25] @ E[j]
        nn = np.argsort(-sim)[:4]
        w = np.maximum(sim[nn], 0)
        ref = np.zeros(25)
        ref[nn] = w / w.sum()
        np.testing.assert_allclose(T[r], ref, rtol=1e-5, atol=1e-7)


def test_row_normalize_against_scipy() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 9))
    x[3] = 1.0
    z = row_normalize(x, "zscore")
    ref = np.zeros_like(x)
    ref[[0, 1, 2, 4, 5]] = scipy.stats.zscore(x[[0, 1, 2, 4, 5]], axis=1)
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-6)
    m = row_normalize(x, "minmax")
    ref_m = (x - x.min(1, keepdims=True)) / np.ptp(x, axis=1, keepdims=True).clip(1e-300)
    ref_m[3] = 0.0
    np.testing.assert_allclose(m, ref_m, rtol=1e-5, atol=1e-6)
    mask = np.arange(9) < 5
    np.testing.assert_allclose(
        row_normalize(x, "zscore", mask)[[0, 1, 2, 4, 5]][:, :5],
        scipy.stats.zscore(x[[0, 1, 2, 4, 5]][:, :5], axis=1),
        rtol=1e-5,
    )


def test_recency_weights_hand_computed() -> None:
    users = np.array([1, 0, 1, 1, 0])
    ts = np.array([30, 5, 10, 10, 1])
    w = recency_weights(users, ts, half_life=1.0)
    # user 1 in time order: row 2 (t=10), row 3 (t=10, later row), row 0 (t=30)
    np.testing.assert_allclose(w, [1.0, 1.0, 0.25, 0.5, 0.5])
    np.testing.assert_array_equal(recency_weights(users, ts, None), np.ones(5))


def test_registry_builds_every_kind() -> None:
    for kind in MODEL_KINDS:
        params = {"encoder": HashingEncoder()} if needs_encoder(kind) else {}
        model = build_model(kind, **params)
        assert isinstance(model, Recommender) and model.name == kind
    hyb = build_model("hybrid", cf="als", cf_params={"factors": 4}, encoder=HashingEncoder())
    assert isinstance(hyb, Hybrid) and hyb.cf_model.params()["factors"] == 4


def test_registry_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model kind"):
        build_model("svd")
    with pytest.raises(ConfigError, match="bad parameters"):
        build_model("ease", lam=3)


def test_text_ease_woodbury_path_matches_gram_path() -> None:
    """Few users (Woodbury) and the direct Gram inverse give the same weights."""
    inter, items = synthetic_data()
    few = inter.subset(inter.user_idx < 6)  # 6 users + 4 dims < 36 items: Woodbury path
    enc = HashingEncoder(dim=4)
    model = TextEASE(lambda_=5.0, beta=3.0, encoder=enc).fit(few, items)
    E = enc.encode(list(items.text)).astype(np.float64)
    E -= E.mean(0)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    X = few.matrix.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + 3.0 * E @ E.T + 5.0 * np.eye(N_ITEMS))
    ref = P / -np.diag(P)
    np.fill_diagonal(ref, 0.0)
    assert model._B is not None
    np.testing.assert_allclose(model._B, ref, atol=1e-5)


def test_history_profiles_against_loop_reference() -> None:
    """Recency-weighted mean profiles (half-life in interactions), against a plain loop.

    Repeated (user, item) events add their weights; users without history get zero rows.
    """
    rng = np.random.default_rng(3)
    n_users, n_items, n = 40, 30, 400
    users = rng.integers(0, n_users - 5, n)  # the last 5 users have no history
    items = rng.integers(0, n_items, n)
    ts = rng.integers(0, 50, n)  # many ties in time: input order breaks them
    inter = Interactions(
        user_idx=users,
        item_idx=items,
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        timestamps=ts.astype(np.int64),
    )
    emb = rng.normal(size=(n_items, 8)).astype(np.float32)
    got = history_profiles(inter, emb, half_life=3.0)
    assert got.dtype == np.float32 and got.shape == (n_users, 8)
    for u in range(n_users):
        rows = np.flatnonzero(users == u)
        if not len(rows):
            assert not got[u].any()
            continue
        rows = sorted(rows, key=lambda r: (ts[r], r))  # time order, ties by input order
        acc = np.zeros(8)
        for age, r in enumerate(reversed(rows)):
            acc += 0.5 ** (age / 3.0) * emb[items[r]]
        np.testing.assert_allclose(got[u], acc / np.linalg.norm(acc), rtol=1e-4, atol=1e-6)
    plain = history_profiles(inter, emb, half_life=None)
    ref = np.zeros((n_users, 8))
    np.add.at(ref, users, emb[items].astype(np.float64))
    norms = np.linalg.norm(ref, axis=1, keepdims=True)
    ref = np.divide(ref, norms, out=np.zeros_like(ref), where=norms > 0)
    np.testing.assert_allclose(plain, ref, rtol=1e-5, atol=1e-6)


def test_hybrid_set_blend_reblends_without_refit() -> None:
    inter, items = synthetic_data()
    enc = HashingEncoder()
    kw = {"cf": "ease", "cf_params": {"lambda_": 5.0}, "encoder": enc}
    model = Hybrid(**kw).fit(inter, items)  # type: ignore[arg-type]
    model.set_blend(lm_weight=0.7, cold_shift=-1.0)
    fresh = Hybrid(**kw, lm_weight=0.7, cold_shift=-1.0).fit(inter, items)  # type: ignore[arg-type]
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(model.score(users), fresh.score(users))
    assert model.get_config() == fresh.get_config()
    with pytest.raises(ConfigError, match="not blend settings"):
        model.set_blend(cold_neighbors=3)
    with pytest.raises(ConfigError, match="lm_weight"):
        model.set_blend(lm_weight=-1.0)
