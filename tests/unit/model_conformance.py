"""LensKit-style conformance tests every recommender inherits, plus small synthetic data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import DataError, NotFittedError
from abrec.models.base import Recommender, top_k

N_USERS = 48
N_ITEMS = 36
N_COLD = 4  # the last N_COLD items never occur in training


class HashingEncoder:
    """Deterministic bag-of-words encoder: each token hashes to a signed dimension."""

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in str(text).lower().split():
                h = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def synthetic_data(seed: int = 7) -> tuple[Interactions, ItemCatalog]:
    """Two taste clusters: users in cluster c mostly interact with cluster-c items.

    Items 0..N_ITEMS-N_COLD-1 are warm; the last N_COLD items appear in no interaction.
    Item texts share a cluster word, so text similarity follows the clusters.
    """
    rng = np.random.default_rng(seed)
    n_warm = N_ITEMS - N_COLD
    item_cluster = np.arange(N_ITEMS) % 2
    user_cluster = np.arange(N_USERS) % 2
    rows, cols = [], []
    for u in range(N_USERS):
        same = np.flatnonzero(item_cluster[:n_warm] == user_cluster[u])
        other = np.flatnonzero(item_cluster[:n_warm] != user_cluster[u])
        picks = np.r_[rng.choice(same, 7, replace=False), rng.choice(other, 1, replace=False)]
        rows += [u] * len(picks)
        cols += list(picks)
    user_idx = np.asarray(rows, dtype=np.int64)
    item_idx = np.asarray(cols, dtype=np.int64)
    inter = Interactions(
        user_idx=user_idx,
        item_idx=item_idx,
        user_ids=np.arange(100, 100 + N_USERS),
        item_ids=np.arange(1, N_ITEMS + 1),
        ratings=rng.integers(1, 6, len(user_idx)).astype(np.float32),
        timestamps=rng.permutation(len(user_idx)).astype(np.int64) * 60,
    )
    words = np.array(["space adventure robots", "romantic comedy wedding"])
    text = np.array(
        [f"Movie {j} {words[item_cluster[j]]} genre{j % 5}" for j in range(N_ITEMS)], dtype=object
    )
    return inter, ItemCatalog(item_ids=inter.item_ids, text=text)


def random_interactions(seed: int, n: int, n_users: int, n_items: int) -> Interactions:
    """`n` random (user, item, rating 1-5, distinct timestamp) events; repeats allowed."""
    rng = np.random.default_rng(seed)
    return Interactions(
        user_idx=rng.integers(0, n_users, n),
        item_idx=rng.integers(0, n_items, n),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        ratings=rng.integers(1, 6, n).astype(np.float32),
        timestamps=rng.permutation(n).astype(np.int64),
    )


def assert_cold_items_follow_text(scores: np.ndarray, margin: float, share: float) -> None:
    """On `synthetic_data`, cold items get non-zero scores and users of cluster c score the
    cold cluster-c items above the other cluster's: by `margin` on average, and `share` of
    the users one by one."""
    cold = np.arange(N_ITEMS - N_COLD, N_ITEMS)
    assert np.abs(scores[:, cold]).min() > 0
    same = (cold[None, :] % 2) == (np.arange(N_USERS)[:, None] % 2)
    assert scores[:, cold][same].mean() > scores[:, cold][~same].mean() + margin
    prefer_own = [
        scores[u, cold[same[u]]].mean() > scores[u, cold[~same[u]]].mean() for u in range(N_USERS)
    ]
    assert np.mean(prefer_own) > share


class RecommenderConformance:
    """Mix into a test class and implement `make_model`; every model must pass these."""

    learns_structure: ClassVar[bool] = True

    def make_model(self) -> Recommender:
        raise NotImplementedError

    def make_history_model(self) -> Recommender | None:
        """A configuration whose scores are a function of the user's item set only.

        For it `score_history([items of u])` must equal `score([u])`. Return None when the
        model has no such configuration (documented exceptions, e.g. ALS's fold-in).
        """
        return self.make_model()

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> tuple[Interactions, ItemCatalog]:
        return synthetic_data()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: tuple[Interactions, ItemCatalog]) -> Recommender:
        return cls().make_model().fit(*data)

    def test_score_shape_and_dtype(self, fitted: Recommender) -> None:
        users = np.array([0, 3, 5, 3])
        s = fitted.score(users)
        assert s.shape == (4, N_ITEMS)
        assert s.dtype == np.float32
        assert np.isfinite(s).all()
        np.testing.assert_array_equal(s[1], s[3])

    def test_recommend_shapes_sorted_unique(self, fitted: Recommender) -> None:
        items, scores = fitted.recommend(np.arange(N_USERS), k=5)
        assert items.shape == scores.shape == (N_USERS, 5)
        assert items.dtype == np.int64
        assert ((items >= 0) & (items < N_ITEMS)).all()
        assert (np.diff(scores, axis=1) <= 0).all()
        assert all(len(set(row)) == 5 for row in items.tolist())
        np.testing.assert_array_equal(
            scores, np.take_along_axis(fitted.score(np.arange(N_USERS)), items, axis=1)
        )

    def test_excludes_seen_items(
        self, fitted: Recommender, data: tuple[Interactions, ItemCatalog]
    ) -> None:
        train = data[0].matrix
        items, scores = fitted.recommend(np.arange(N_USERS), k=10)
        assert np.isfinite(scores).all()
        assert not train[np.arange(N_USERS)[:, None], items].toarray().any()

    def test_include_seen_when_asked(self, fitted: Recommender) -> None:
        items, _ = fitted.recommend(np.arange(N_USERS), k=N_ITEMS, exclude_seen=False)
        np.testing.assert_array_equal(
            np.sort(items, axis=1), np.tile(np.arange(N_ITEMS), (N_USERS, 1))
        )

    def test_deterministic(
        self, fitted: Recommender, data: tuple[Interactions, ItemCatalog]
    ) -> None:
        again = self.make_model().fit(*data)
        users = np.arange(N_USERS)
        np.testing.assert_array_equal(fitted.score(users), again.score(users))

    def test_save_load_round_trip(self, fitted: Recommender, tmp_path: Path) -> None:
        fitted.save(tmp_path / "m")
        meta = json.loads((tmp_path / "m" / "model.json").read_text())
        assert meta["params"] == fitted.params()
        loaded = Recommender.load(tmp_path / "m")
        assert type(loaded) is type(fitted)
        users = np.array([-1, *range(N_USERS)])
        np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
        for a, b in zip(loaded.recommend(users, 7), fitted.recommend(users, 7), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_unknown_users(self, fitted: Recommender) -> None:
        users = np.array([-1, N_USERS, N_USERS + 10])
        s = fitted.score(users)
        assert np.isfinite(s).all() and s.shape == (3, N_ITEMS)
        items, scores = fitted.recommend(users, k=6)
        assert items.shape == (3, 6) and np.isfinite(scores).all()
        assert all(len(set(row)) == 6 for row in items.tolist())

    def test_k_larger_than_catalogue(self, fitted: Recommender) -> None:
        items, scores = fitted.recommend(np.array([0, -1]), k=N_ITEMS + 20, exclude_seen=False)
        assert items.shape == scores.shape == (2, N_ITEMS)
        np.testing.assert_array_equal(np.sort(items, axis=1), np.tile(np.arange(N_ITEMS), (2, 1)))

    def test_not_fitted_raises(self, tmp_path: Path) -> None:
        model = self.make_model()
        with pytest.raises(NotFittedError):
            model.score(np.array([0]))
        with pytest.raises(NotFittedError):
            model.recommend(np.array([0]), k=3)
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "nope")

    def test_params_are_json_and_rebuild(self, fitted: Recommender) -> None:
        params = json.loads(json.dumps(fitted.params()))
        assert params == fitted.get_config().model_dump(mode="json")
        assert type(fitted)(**params).get_config() == fitted.get_config()
        assert type(fitted).from_config(fitted.get_config()).params() == fitted.params()

    def test_scores_do_not_depend_on_the_batch(self, fitted: Recommender) -> None:
        """A user's scores are bit-identical alone, first of 7, in the middle of 33, last of 64."""
        rng = np.random.default_rng(11)
        users = np.array([-1, *range(N_USERS)])
        alone = {int(u): fitted.score(np.array([u]))[0] for u in users}
        for size, pos in ((7, 0), (33, 16), (64, 63), (64, 0)):
            for u in (0, 3, N_USERS - 1, -1):
                batch = rng.choice(users, size)
                batch[pos] = u
                got = fitted.score(batch)
                np.testing.assert_array_equal(got[pos], alone[u])
                for r, v in enumerate(batch.tolist()):  # every other row too
                    np.testing.assert_array_equal(got[r], alone[v])

    def test_history_scores_do_not_depend_on_the_batch(self, fitted: Recommender) -> None:
        """`score_history` rows too: alone, first of 7, middle of 33, last of 64, all equal."""
        if not fitted.supports_history:
            pytest.skip("model has no history scoring")
        rng = np.random.default_rng(12)
        pool = [rng.choice(N_ITEMS, rng.integers(0, 9), replace=False) for _ in range(20)]
        alone = [fitted.score_history([h])[0] for h in pool]
        for size, pos in ((7, 0), (33, 16), (64, 63)):
            idx = rng.integers(0, len(pool), size)
            idx[pos] = 0
            got = fitted.score_history([pool[i] for i in idx])
            for r, i in enumerate(idx.tolist()):
                np.testing.assert_array_equal(got[r], alone[i])

    def test_learns_cluster_structure(self, fitted: Recommender) -> None:
        if not self.learns_structure:
            pytest.skip("model is not personalised")
        items, _ = fitted.recommend(np.arange(N_USERS), k=3)
        same = (items % 2) == (np.arange(N_USERS)[:, None] % 2)
        assert same.mean() > 0.8

    def test_score_history_equals_score_of_known_user(
        self, data: tuple[Interactions, ItemCatalog]
    ) -> None:
        model = self.make_history_model()
        if model is None:
            pytest.skip("scores depend on more than the item set (see make_history_model)")
        model.fit(*data)
        assert model.supports_history
        train = data[0].matrix.tocsr()
        users = np.arange(N_USERS)
        histories = [train.indices[train.indptr[u] : train.indptr[u + 1]] for u in users]
        got = model.score_history(histories)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, model.score(users), rtol=1e-5, atol=1e-5)

    def test_score_history_contract(self, fitted: Recommender, tmp_path: Path) -> None:
        if not fitted.supports_history:
            with pytest.raises(NotImplementedError):
                fitted.score_history([np.array([0, 1])])
            return
        hists = [np.array([0, 2, 4]), np.array([], dtype=np.int64), np.array([4, 2, 0, 0, 2])]
        s = fitted.score_history(hists)
        assert s.shape == (3, N_ITEMS) and s.dtype == np.float32 and np.isfinite(s).all()
        np.testing.assert_array_equal(s[1], fitted.score(np.array([-1]))[0])  # empty: cold user
        np.testing.assert_allclose(s[2], s[0], rtol=1e-6, atol=1e-6)  # a set: order, repeats
        single = fitted.score_history([hists[0]])[0]  # a row does not depend on its batch
        np.testing.assert_allclose(single, s[0], rtol=1e-5, atol=1e-6)
        assert fitted.score_history([]).shape == (0, N_ITEMS)
        with pytest.raises(DataError, match="outside"):
            fitted.score_history([np.array([0, N_ITEMS])])
        with pytest.raises(DataError, match="outside"):
            fitted.score_history([np.array([-1])])
        with pytest.raises(DataError, match="integers"):
            fitted.score_history([np.array([0.5])])
        fitted.save(tmp_path / "h")
        np.testing.assert_array_equal(Recommender.load(tmp_path / "h").score_history(hists), s)

    def test_score_history_follows_the_history(self, fitted: Recommender) -> None:
        if not (self.learns_structure and fitted.supports_history):
            pytest.skip("model is not personalised or has no history scoring")
        n_warm = N_ITEMS - N_COLD
        hists = [np.arange(c, n_warm, 2)[:6] for c in (0, 1)]  # six warm items of cluster c
        s = fitted.score_history(hists)
        for c, h in enumerate(hists):
            s[c, h] = -np.inf
        items, _ = top_k(s, 3)
        assert ((items % 2) == np.array([[0], [1]])).mean() > 0.8
