"""User profiles: hand-computed means, recency decay, rating weights, loop reference."""

from __future__ import annotations

import numpy as np
import pytest

from abrec.data import Interactions
from abrec.embed import interaction_weights, user_profiles
from abrec.errors import DataError

DAY = 86_400


def inter(
    users: list[int],
    items: list[int],
    ts: list[int] | None = None,
    ratings: list[float] | None = None,
    n_users: int = 3,
    n_items: int = 3,
) -> Interactions:
    return Interactions(
        user_idx=np.asarray(users),
        item_idx=np.asarray(items),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        ratings=None if ratings is None else np.asarray(ratings, dtype=np.float32),
        timestamps=None if ts is None else np.asarray(ts, dtype=np.int64),
    )


EMB = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]], dtype=np.float32)


def test_mean_profiles_hand_computed() -> None:
    p = user_profiles(inter([0, 0, 2], [0, 1, 2]), EMB)
    assert p.dtype == np.float32 and p.shape == (3, 2)
    np.testing.assert_allclose(p[0], [2**-0.5, 2**-0.5], rtol=1e-6)
    np.testing.assert_array_equal(p[1], [0.0, 0.0])  # no history -> zero row
    np.testing.assert_allclose(p[2], [0.6, 0.8], rtol=1e-6)


def test_recency_half_life() -> None:
    # item 0 is 180 days older than item 1 (the user's last event): weight 0.5 vs 1
    x = inter([0, 0], [0, 1], ts=[0, 180 * DAY])
    p = user_profiles(x, EMB, method="recency", half_life_days=180.0)
    np.testing.assert_allclose(p[0], np.array([0.5, 1.0]) / np.hypot(0.5, 1.0), rtol=1e-6)
    w = interaction_weights(x, "recency", half_life_days=90.0)
    np.testing.assert_allclose(w, [0.25, 1.0])


def test_rating_weights_and_repeats_add_up() -> None:
    x = inter([0, 0, 0], [0, 1, 1], ratings=[2.0, 1.0, 3.0])
    p = user_profiles(x, EMB, weights_from_ratings=True)
    np.testing.assert_allclose(p[0], np.array([2.0, 4.0]) / np.hypot(2.0, 4.0), rtol=1e-6)


def test_against_loop_reference() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items, n = 40, 30, 400
    users = rng.integers(0, n_users - 5, n)  # the last 5 users have no history
    items = rng.integers(0, n_items, n)
    ts = rng.integers(0, 1000 * DAY, n)
    ratings = rng.integers(1, 11, n) / 2
    x = inter(users.tolist(), items.tolist(), ts.tolist(), ratings.tolist(), n_users, n_items)
    emb = rng.normal(size=(n_items, 8)).astype(np.float32)
    got = user_profiles(x, emb, method="recency", half_life_days=60.0, weights_from_ratings=True)
    for u in range(n_users):
        rows = np.flatnonzero(users == u)
        if not len(rows):
            assert not got[u].any()
            continue
        last = ts[rows].max()
        acc = np.zeros(8)
        for r in rows:
            acc += 0.5 ** ((last - ts[r]) / DAY / 60.0) * ratings[r] * emb[items[r]]
        np.testing.assert_allclose(got[u], acc / np.linalg.norm(acc), rtol=1e-4, atol=1e-6)


def test_bad_inputs() -> None:
    x = inter([0], [0])
    with pytest.raises(DataError, match="n_items=3"):
        user_profiles(x, EMB[:2])
    with pytest.raises(DataError, match="timestamps"):
        user_profiles(x, EMB, method="recency")
    with pytest.raises(DataError, match="ratings"):
        user_profiles(x, EMB, weights_from_ratings=True)
    with pytest.raises(DataError, match="unknown profile method"):
        user_profiles(x, EMB, method="median")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="half_life_days"):
        user_profiles(inter([0], [0], ts=[1]), EMB, method="recency", half_life_days=0)
