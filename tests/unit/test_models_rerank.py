"""Learned re-ranker (LTRReranker / kind "ltr", CFReranker / kind "ltr_cf")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_conformance import N_USERS, HashingEncoder, RecommenderConformance, synthetic_data
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from abrec.data.splits import temporal_user_split
from abrec.data.types import Interactions
from abrec.errors import ConfigError, DataError
from abrec.models import build_model, needs_encoder
from abrec.models.base import Recommender
from abrec.models.ease import EASE
from abrec.models.rerank import CF_FEATURES, LM_FEATURES, CFReranker, LTRReranker


class TestLTRReranker(RecommenderConformance):
    def make_model(self) -> Recommender:
        return LTRReranker(n_cf=10, n_lm=5, lambda_=5.0, encoder=HashingEncoder())

    def make_history_model(self) -> Recommender | None:
        return None  # features use recency (last items, time-decayed profile): no set function


class TestCFReranker(RecommenderConformance):
    def make_model(self) -> Recommender:
        return CFReranker(n_cf=10, lambda_=5.0)

    def make_history_model(self) -> Recommender | None:
        return None


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, object]:
    return synthetic_data()


def _sklearn_reference(model: LTRReranker, F: np.ndarray, y: np.ndarray) -> np.ndarray:
    scaler = StandardScaler().fit(F)
    lr = LogisticRegression(C=model.config.C, max_iter=2000, random_state=model.config.seed)
    lr.fit(scaler.transform(F), y)
    return np.asarray(lr.decision_function(scaler.transform(F)))


@pytest.mark.parametrize("use_lm", [False, True])
def test_decision_function_equals_sklearn(data, use_lm: bool) -> None:
    """Stored arrays reproduce sklearn's StandardScaler + LogisticRegression decision values."""
    inter, items = data
    model = LTRReranker(use_lm=use_lm, n_cf=10, n_lm=5, lambda_=5.0, encoder=HashingEncoder())
    model.fit(inter, items)
    F, y = model.validation_data(inter, items)[2:]
    assert F.shape[1] == len(LM_FEATURES if use_lm else CF_FEATURES)
    assert y.any() and not y.all()
    np.testing.assert_allclose(
        model.decision_function(F), _sklearn_reference(model, F, y), rtol=1e-6, atol=1e-8
    )


def test_validation_split_comes_from_train_only(data) -> None:
    """Labels are the train's last 20% per user rated >= 4; features come from the rest."""
    inter, items = data
    model = CFReranker(n_cf=10, lambda_=5.0)
    uu, ii, F, y = model.validation_data(inter, items)
    inner, val = temporal_user_split(inter, 0.2)
    assert val.ratings is not None
    pos = val.subset(val.ratings >= 4.0)
    expected = set(zip(pos.user_idx.tolist(), pos.item_idx.tolist(), strict=True))
    got = set(zip(uu[y].tolist(), ii[y].tolist(), strict=True))
    assert got <= expected and len(got) > 0
    assert set(uu.tolist()) == set(pos.user_idx.tolist())  # users with a positive only
    # no candidate is an item of the user's inner history
    assert not np.asarray(inner.matrix[uu, ii]).any()
    # the first feature is the EASE score fitted on train minus validation
    ease = EASE(lambda_=5.0).fit(inner, items).score(np.unique(uu))
    rows = np.searchsorted(np.unique(uu), uu)
    np.testing.assert_allclose(F[:, 0], ease[rows, ii], rtol=1e-5, atol=1e-6)


def test_candidates_are_the_ease_top_n_ranked_by_decision(data) -> None:
    inter, items = data
    model = CFReranker(n_cf=6, lambda_=5.0).fit(inter, items)
    users = np.arange(N_USERS)
    ease = EASE(lambda_=5.0).fit(inter, items).score(users)
    seen = inter.matrix.toarray() > 0
    ease[seen] = -np.inf
    top_ease = np.argsort(-ease, axis=1, kind="stable")[:, :6]
    items_ltr, _ = model.recommend(users, k=6)
    np.testing.assert_array_equal(np.sort(items_ltr, 1), np.sort(top_ease, 1))
    # the learned score is the decision function of the candidate features
    uu, ii, F, _ = model.features(users)
    s = model.score(users)
    np.testing.assert_allclose(s[uu, ii], model.decision_function(F), rtol=1e-5, atol=1e-5)
    # every non-candidate scores below every candidate of its row
    cand = np.zeros_like(seen)
    cand[uu, ii] = True
    assert cand.sum(axis=1).min() == 6
    assert (np.where(cand, s, np.inf).min(axis=1) > np.where(cand, -np.inf, s).max(axis=1)).all()


def test_registry_kinds() -> None:
    assert needs_encoder("ltr") and not needs_encoder("ltr_cf")
    ltr = build_model("ltr", encoder=HashingEncoder())
    cf = build_model("ltr_cf", n_cf=50)
    assert isinstance(ltr, LTRReranker) and ltr.config.use_lm and ltr.name == "ltr"
    assert isinstance(cf, CFReranker) and not cf.config.use_lm and cf.config.n_cf == 50


def test_loaded_model_needs_no_encoder(data, tmp_path: Path) -> None:
    inter, items = data
    model = LTRReranker(n_cf=10, n_lm=5, lambda_=5.0, encoder=HashingEncoder()).fit(inter, items)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, LTRReranker) and loaded.encoder is None
    users = np.arange(N_USERS)
    np.testing.assert_array_equal(loaded.score(users), model.score(users))


def test_encoder_called_once_per_text_list_per_fit(data) -> None:
    """Item texts once (the synthetic titles are the texts), the anchors of the inner and of
    the full training data once each."""
    inter, items = data
    enc = HashingEncoder()
    LTRReranker(n_cf=10, n_lm=5, lambda_=5.0, encoder=enc).fit(inter, items)
    assert enc.calls == 3


@pytest.mark.parametrize(
    "params",
    [
        {"n_cf": 0},
        {"n_lm": -1},
        {"n_cf": 2.5},
        {"validation_fraction": 1.0},
        {"C": 0.0},
        {"lambda_": "lots"},
        {"beta": float("inf")},
    ],
)
def test_bad_params(params: dict[str, float]) -> None:
    with pytest.raises(
        ConfigError, match=f"^bad parameters for model kind 'ltr_cf': {next(iter(params))}: "
    ):
        CFReranker(**params)


def test_bad_data(data) -> None:
    inter, items = data
    no_time = Interactions(
        user_idx=inter.user_idx,
        item_idx=inter.item_idx,
        user_ids=inter.user_ids,
        item_ids=inter.item_ids,
        ratings=inter.ratings,
    )
    with pytest.raises(DataError, match="timestamps"):
        CFReranker(n_cf=5).fit(no_time, items)
    assert inter.ratings is not None
    all_low = Interactions(
        user_idx=inter.user_idx,
        item_idx=inter.item_idx,
        user_ids=inter.user_ids,
        item_ids=inter.item_ids,
        ratings=np.ones_like(inter.ratings),
        timestamps=inter.timestamps,
    )
    with pytest.raises(DataError, match="no positive validation"):
        CFReranker(n_cf=5).fit(all_low, items)


def test_without_ratings_every_validation_event_is_positive(data) -> None:
    inter, items = data
    unrated = Interactions(
        user_idx=inter.user_idx,
        item_idx=inter.item_idx,
        user_ids=inter.user_ids,
        item_ids=inter.item_ids,
        timestamps=inter.timestamps,
    )
    uu, ii, _, y = CFReranker(n_cf=10, lambda_=5.0).validation_data(unrated, items)
    _, val = temporal_user_split(unrated, 0.2)
    expected = set(zip(val.user_idx.tolist(), val.item_idx.tolist(), strict=True))
    assert set(zip(uu[y].tolist(), ii[y].tolist(), strict=True)) <= expected
    assert y.sum() > int(0.5 * len(expected))


def test_relevance_threshold_is_the_protocol_one() -> None:
    """The validation labels use the evaluation protocol's threshold (one definition)."""
    import abrec.models.rerank as rerank

    assert not hasattr(rerank.LTRReranker, "RELEVANCE_THRESHOLD")
    assert "RELEVANCE_THRESHOLD = " not in Path(rerank.__file__).read_text()


def test_two_tower_features_are_the_two_tower_scores(data) -> None:
    from abrec.models.two_tower import TwoTower

    inter, items = data
    model = LTRReranker(n_cf=10, n_lm=5, lambda_=5.0, encoder=HashingEncoder()).fit(inter, items)
    tt = TwoTower(encoder=HashingEncoder()).fit(inter, items)
    users = np.arange(N_USERS)
    uu, ii, F, _ = model.features(users)
    T = tt.score(users).astype(np.float64)
    col = {n: j for j, n in enumerate(LM_FEATURES)}
    np.testing.assert_allclose(F[:, col["tt"]], T[uu, ii], rtol=1e-6, atol=1e-7)
    # the two-tower's top n_lm unseen items are candidates
    seen = inter.matrix.toarray() > 0
    top = np.argsort(-np.where(seen, -np.inf, T), axis=1, kind="stable")[:, :5]
    cand = {(u, i) for u, i in zip(uu.tolist(), ii.tolist(), strict=True)}
    assert all((u, int(i)) in cand for u in users for i in top[u])


def test_cold_values_are_what_a_never_seen_item_gets(data) -> None:
    """Reference: EASE score 0 for the item, its z-score and rank in the user's row."""
    inter, items = data
    model = CFReranker(n_cf=10, lambda_=5.0).fit(inter, items)
    users = np.array([3, 3, 7, 11])
    V = model._gen.cold_values(users)
    S = EASE(lambda_=5.0).fit(inter, items).score(users).astype(np.float64)
    seen = inter.matrix[users].toarray() > 0
    col = {n: j for j, n in enumerate(CF_FEATURES)}
    np.testing.assert_allclose(V[:, col["ease_z"]], -S.mean(1) / (S.std(1) + 1e-9), rtol=1e-9)
    np.testing.assert_array_equal(V[:, col["ease_lrank"]], np.log1p(((S > 0) & ~seen).sum(1)))
    np.testing.assert_array_equal(V[:, col["cold"]], 1.0)
    hist = np.asarray(inter.matrix[users].sum(axis=1)).ravel()
    np.testing.assert_allclose(V[:, col["lhist"]], np.log1p(hist))
    for name in ("ease", "lpop", "lrec", "cf_max5", "cf_mean5"):
        np.testing.assert_array_equal(V[:, col[name]], 0.0)


def test_cf_dropout_masks_a_seeded_share_of_warm_rows(data) -> None:
    """DropoutNet-style masking: that share of warm candidates get the cold CF values; the
    language-model columns and the cold rows are left alone; the weights change."""
    inter, items = data
    model = LTRReranker(n_cf=10, n_lm=5, lambda_=5.0, cf_dropout=0.5, encoder=HashingEncoder())
    uu, ii, F, _ = model.validation_data(inter, items)  # generators fitted on the inner part
    M = model._mask_cf(uu, ii, F)
    n_cf = len(CF_FEATURES)
    changed = np.flatnonzero((M != F).any(axis=1))
    warm = model._gen.arrays["pop"][ii] > 0
    assert warm[changed].all()
    assert 0.35 < len(changed) / warm.sum() < 0.65
    np.testing.assert_array_equal(M[:, n_cf:], F[:, n_cf:])
    rows = np.flatnonzero((M[:, :n_cf] == model._gen.cold_values(uu)).all(axis=1) & warm)
    assert set(changed) <= set(rows)
    np.testing.assert_array_equal(M, model._mask_cf(uu, ii, F))  # seeded
    plain = LTRReranker(n_cf=10, n_lm=5, lambda_=5.0, encoder=HashingEncoder()).fit(inter, items)
    masked = model.fit(inter, items)
    assert not np.allclose(plain.coef_, masked.coef_)


def test_cold_boost_shifts_only_never_seen_candidates(data) -> None:
    inter, items = data
    kw = {"n_cf": 10, "n_lm": 8, "lambda_": 5.0}
    base = LTRReranker(**kw, encoder=HashingEncoder()).fit(inter, items)
    boosted = LTRReranker(**kw, cold_boost=2.5, encoder=HashingEncoder()).fit(inter, items)
    users = np.arange(N_USERS)
    uu, ii, _, _ = base.features(users)
    diff = boosted.score(users)[uu, ii] - base.score(users)[uu, ii]
    cold = base.train_matrix.sum(axis=0).A1[ii] == 0
    assert cold.any() and (~cold).any()
    np.testing.assert_allclose(diff[cold], 2.5, atol=1e-5)
    np.testing.assert_allclose(diff[~cold], 0.0, atol=1e-6)
