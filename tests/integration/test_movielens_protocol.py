"""ml-small-temporal-v1 on the real MovieLens latest-small: counts, leakage, ties, cold items."""

from __future__ import annotations

import numpy as np
import pandas as pd

from abrec.data import (
    Interactions,
    ItemCatalog,
    ProtocolSplit,
    leave_last_one_out,
    ml_small_temporal_v1,
    random_split,
)
from abrec.data.movielens import MovieLensRaw

MLSmall = tuple[Interactions, ItemCatalog]  # the `ml_small` fixture (a NamedTuple: inter, items)


def test_dataset_shape_and_catalog(ml_small: MLSmall) -> None:
    inter, items = ml_small
    assert inter.n_users == 610 and inter.n_items == 9_742 and len(inter) == 100_836
    assert len(items) == 9_742 and np.array_equal(items.item_ids, inter.item_ids)
    assert inter.ratings is not None and inter.timestamps is not None
    toy = int(np.flatnonzero(items.item_ids == 1)[0])
    assert items.text[toy] == (
        "Toy Story. Year: 1995. Genres: Adventure, Animation, Children, Comedy, Fantasy. "
        "Tags: pixar, fun."
    )
    assert items.features is not None and {"year", "genres"} <= set(items.features.columns)
    assert all(isinstance(t, str) and t.endswith(".") for t in items.text)


def test_protocol_counts(ml_small_split: ProtocolSplit) -> None:
    p = ml_small_split
    assert p.name == "ml-small-temporal-v1"
    assert (len(p.train), len(p.test), len(p.scored_users)) == (80_419, 20_417, 592)
    assert p.relevant.shape == (610, 9_742)
    assert round(100 * p.cold_relevant_fraction(), 1) == 6.6


def test_protocol_against_pandas_reference(ml_small_raw: MovieLensRaw, ml_small: MLSmall) -> None:
    """Independent reimplementation: per-user stable sort, first floor(0.8 n) rows train."""
    r = ml_small_raw.ratings.sort_values(["userId", "timestamp", "movieId"], kind="stable")
    pos = r.groupby("userId").cumcount()
    n = r.groupby("userId")["movieId"].transform("size")
    test_ref = r[pos >= np.floor(0.8 * n)]
    p = ml_small_temporal_v1(ml_small[0])
    got = p.test.to_frame()
    ref_pairs = set(zip(test_ref.userId, test_ref.movieId, strict=True))
    assert set(zip(got.user_id, got.item_id, strict=True)) == ref_pairs
    rel_ref = test_ref[test_ref.rating >= 4.0]
    assert p.relevant.nnz == len(rel_ref)
    assert len(p.scored_users) == rel_ref.userId.nunique()


def test_no_leakage_and_time_order(ml_small_split: ProtocolSplit) -> None:
    p = ml_small_split
    tr, te = p.train.to_frame(), p.test.to_frame()
    key = lambda f: set(zip(f.user_id, f.item_id, strict=True))  # noqa: E731
    assert not key(tr) & key(te)
    assert len(tr) + len(te) == 100_836
    last_train = tr.groupby("user_id").timestamp.max()
    first_test = te.groupby("user_id").timestamp.min()
    both = last_train.index.intersection(first_test.index)
    assert (first_test[both] >= last_train[both]).all()
    # relevant items are all test items rated >= 4 and never training items of that user
    assert not (p.relevant.multiply(p.train.matrix)).nnz


def test_stable_ties_on_real_data(ml_small: MLSmall) -> None:
    """Reordering the input rows does not change the split (ties resolved by movieId)."""
    inter = ml_small[0]
    perm = np.random.default_rng(0).permutation(len(inter))
    a = ml_small_temporal_v1(inter).test.to_frame()
    b = ml_small_temporal_v1(inter.subset(perm)).test.to_frame()
    cols = ["user_id", "item_id"]
    pd.testing.assert_frame_equal(
        a[cols].sort_values(cols).reset_index(drop=True),
        b[cols].sort_values(cols).reset_index(drop=True),
    )
    # ties do occur at the cut in this data, so the rule matters
    r = inter.to_frame()
    dup_ts = r.duplicated(["user_id", "timestamp"], keep=False)
    assert dup_ts.sum() > 1000


def test_other_splits_on_real_data(ml_small: MLSmall) -> None:
    train, test = leave_last_one_out(ml_small[0])
    assert len(test) == 610 and len(train) == 100_836 - 610
    train, test = random_split(ml_small[0], 0.2, seed=42)
    assert (len(train), len(test)) == (80_419, 20_417)
