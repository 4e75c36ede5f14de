"""Splits: hand-computed cuts, stable tie handling, no leakage, protocol matrices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abrec.data import (
    Interactions,
    leave_last_one_out,
    ml_small_temporal_v1,
    protocol_split,
    random_split,
    temporal_user_split,
)
from abrec.errors import DataError


def make(
    users: list[int],
    items: list[int],
    ts: list[int] | None,
    ratings: list[float] | None = None,
    n_users: int | None = None,
    item_ids: list[object] | None = None,
) -> Interactions:
    n_users = n_users if n_users is not None else max(users) + 1
    ids = np.asarray(item_ids if item_ids is not None else np.arange(max(items) + 1) * 10)
    return Interactions(
        user_idx=np.asarray(users, dtype=np.int64),
        item_idx=np.asarray(items, dtype=np.int64),
        user_ids=np.arange(n_users) + 100,
        item_ids=ids,
        ratings=None if ratings is None else np.asarray(ratings, dtype=np.float32),
        timestamps=None if ts is None else np.asarray(ts, dtype=np.int64),
    )


def pairs(inter: Interactions) -> set[tuple[int, int]]:
    return set(zip(inter.user_idx.tolist(), inter.item_idx.tolist(), strict=True))


def test_temporal_split_hand_computed() -> None:
    # user 0: 5 events -> floor(0.8*5)=4 train, 1 test (the latest, item 4)
    # user 1: 3 events -> floor(2.4)=2 train, 1 test; rows given out of time order
    # user 2: 1 event  -> floor(0.8)=0 train, 1 test
    inter = make(
        users=[0, 0, 0, 0, 0, 1, 1, 1, 2],
        items=[0, 1, 2, 3, 4, 2, 0, 1, 3],
        ts=[10, 20, 30, 40, 50, 300, 100, 200, 7],
    )
    train, test = temporal_user_split(inter, 0.2)
    assert pairs(test) == {(0, 4), (1, 2), (2, 3)}
    assert pairs(train) == {(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)}
    # index spaces are kept
    assert train.n_items == test.n_items == inter.n_items
    assert train.n_users == test.n_users == inter.n_users


def test_temporal_ties_broken_by_external_item_id_not_row_order() -> None:
    # all three at the same time; external ids: idx0 -> 30, idx1 -> 10, idx2 -> 20
    # sorted by (ts, external id): idx1 (10), idx2 (20), idx0 (30) -> idx0 is last -> test
    inter = make([0, 0, 0], [0, 1, 2], [5, 5, 5], item_ids=[30, 10, 20])
    for perm in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        shuffled = inter.subset(np.asarray(perm))
        _, test = temporal_user_split(shuffled, 0.34)  # floor(0.66*3)=1 train... 2 test
        assert pairs(test) == {(0, 0), (0, 2)}
        _, test1 = leave_last_one_out(shuffled)
        assert pairs(test1) == {(0, 0)}


def test_temporal_split_rejects_missing_timestamps_and_bad_fraction() -> None:
    inter = make([0, 0], [0, 1], None)
    with pytest.raises(DataError, match="timestamps"):
        temporal_user_split(inter)
    with pytest.raises(DataError, match="timestamps"):
        leave_last_one_out(inter)
    with pytest.raises(DataError, match="between 0 and 1"):
        temporal_user_split(make([0], [0], [1]), 1.0)
    with pytest.raises(DataError, match="between 0 and 1"):
        random_split(inter, 0.0, seed=1)


def test_leave_last_one_out() -> None:
    inter = make([0, 0, 0, 1, 2, 2], [0, 1, 2, 0, 2, 1], [3, 1, 2, 9, 1, 1])
    train, test = leave_last_one_out(inter)
    # user 0 last at ts 3 is item 0; user 1 has one event (kept in train);
    # user 2 tie at ts 1: external ids 20 (idx 2) > 10 (idx 1) -> idx 2 is last
    assert pairs(test) == {(0, 0), (2, 2)}
    assert pairs(train) == {(0, 1), (0, 2), (1, 0), (2, 1)}


def test_repeat_events_never_leak_into_test() -> None:
    # user 0 consumes item 0 at ts 1 and again at ts 5 (last): the repeat is not a test item
    inter = make([0, 0, 0, 0, 0], [0, 1, 2, 3, 0], [1, 2, 3, 4, 5])
    train, test = temporal_user_split(inter, 0.2)
    assert len(test) == 0 and len(train) == 4
    assert not pairs(train) & pairs(test)


def test_random_split_is_seeded_and_per_user() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 10)
    items = np.concatenate([rng.permutation(40)[:10] for _ in range(50)])
    inter = make(users.tolist(), items.tolist(), None)
    a_train, a_test = random_split(inter, 0.3, seed=7)
    _, b_test = random_split(inter, 0.3, seed=7)
    _, c_test = random_split(inter, 0.3, seed=8)
    assert pairs(a_test) == pairs(b_test)
    assert pairs(a_test) != pairs(c_test)
    # exactly 10 - floor(0.7 * 10) = 3 per user
    assert np.array_equal(np.bincount(a_test.user_idx, minlength=50), np.full(50, 3))
    assert not pairs(a_train) & pairs(a_test)
    assert len(a_train) + len(a_test) == len(inter)


def test_random_split_is_roughly_uniform_within_user() -> None:
    # one user with 10 events; over 2000 seeds every position lands in test ~20% of the time
    inter = make([0] * 10, list(range(10)), None)
    hits = np.zeros(10)
    for seed in range(2000):
        _, test = random_split(inter, 0.2, seed=seed)
        hits[test.item_idx] += 1
    freq = hits / 2000
    # binomial sd at p=0.2, n=2000 is 0.009; 5 sd bound
    assert np.all(np.abs(freq - 0.2) < 0.045)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 5)),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from([0.1, 0.2, 0.25, 0.5]),
)
def test_temporal_split_properties(rows: list[tuple[int, int, int]], frac: float) -> None:
    seen: set[tuple[int, int]] = set()
    uniq = [r for r in rows if (r[0], r[1]) not in seen and not seen.add((r[0], r[1]))]
    users, items, ts = (list(x) for x in zip(*uniq, strict=True))
    inter = make(users, items, ts, n_users=7, item_ids=list(range(10)))
    train, test = temporal_user_split(inter, frac)
    assert len(train) + len(test) == len(inter)
    assert not pairs(train) & pairs(test)
    for u in range(7):
        tr = train.timestamps[train.user_idx == u]
        te = test.timestamps[test.user_idx == u]
        n = int((inter.user_idx == u).sum())
        assert len(tr) == int(np.floor(n * (1 - frac) + 1e-9))
        if len(tr) and len(te):
            # everything in test is at or after everything in train (ties by item id)
            assert te.min() >= tr.max()
            at_edge_tr = train.item_idx[(train.user_idx == u) & (train.timestamps == te.min())]
            at_edge_te = test.item_idx[(test.user_idx == u) & (test.timestamps == te.min())]
            if len(at_edge_tr) and len(at_edge_te):
                assert at_edge_tr.max() < at_edge_te.min()


def test_protocol_split_matrices() -> None:
    inter = make(
        users=[0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2],
        items=[0, 1, 2, 3, 4, 0, 1, 2, 3, 5, 0, 1, 2, 3, 4],
        ts=[1, 2, 3, 4, 5] * 3,
        ratings=[5, 5, 5, 5, 4.0, 5, 5, 5, 5, 4.5, 5, 5, 5, 5, 3.5],
        item_ids=[1, 2, 3, 4, 5, 6],
    )
    p = ml_small_temporal_v1(inter)
    assert p.name == "ml-small-temporal-v1"
    assert p.relevant.shape == (3, 6)
    assert p.relevant.toarray().tolist() == [
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],  # 3.5 < 4.0: not relevant, user 2 not scored
    ]
    assert p.scored_users.tolist() == [0, 1]
    assert p.cold_items.tolist() == [False, False, False, False, True, True]
    assert p.cold_relevant_fraction() == 1.0
    assert p.cold_relevant().nnz == 2


def test_protocol_needs_ratings_and_matching_spaces() -> None:
    with pytest.raises(DataError, match="ratings"):
        ml_small_temporal_v1(make([0, 0], [0, 1], [1, 2]))
    a = make([0], [0], [1], ratings=[5.0])
    b = make([0, 1], [0, 1], [1, 2], ratings=[5.0, 4.0])
    with pytest.raises(DataError, match="index spaces"):
        protocol_split(a, b)


def test_validation_split_follows_the_protocol_kind() -> None:
    """Each kind (or protocol name) carves the same split as the function it names."""
    from model_conformance import random_interactions

    from abrec.data.splits import (
        leave_last_one_out,
        random_split,
        temporal_user_split,
        validation_split,
    )

    inter = random_interactions(3, 400, 20, 30)
    pairs = {
        "temporal": temporal_user_split(inter, 0.25),
        "ml-small-temporal-v1": temporal_user_split(inter, 0.25),
        "random": random_split(inter, 0.25, seed=5),
        "leave-last-one-out": leave_last_one_out(inter),
    }
    for kind, (fit_ref, val_ref) in pairs.items():
        fit, val = validation_split(inter, kind, 0.25, seed=5)
        np.testing.assert_array_equal(fit.item_idx, fit_ref.item_idx)
        np.testing.assert_array_equal(val.timestamps, val_ref.timestamps)
    with pytest.raises(DataError, match="unknown validation kind"):
        validation_split(inter, "weekly")
