"""Training pairs, the validation split (training period only), the ranking metric, batching."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import train_synthetic as syn

from abrec.data import leave_last_one_out, protocol_split, random_split
from abrec.errors import ConfigError, DataError
from abrec.train import TrainConfig, build_training_data, parse_train_config, rank_metrics
from abrec.train.validation import epoch_batches


def _rows(inter):  # (user, item, timestamp) triples
    return set(
        zip(
            inter.user_idx.tolist(), inter.item_idx.tolist(), inter.timestamps.tolist(), strict=True
        )
    )


@pytest.mark.parametrize("protocol", ["temporal", "random", "leave-last-one-out"])
def test_validation_is_carved_from_the_training_period_only(tmp_path: Path, protocol: str) -> None:
    inter = syn.interactions()
    if protocol == "temporal":
        split = syn.split()
    elif protocol == "random":
        split = protocol_split(*random_split(inter, 0.2, seed=3), name="random")
    else:
        split = protocol_split(*leave_last_one_out(inter), name="leave-last-one-out")
    data = build_training_data(split.train, syn.catalog(), syn.config(tmp_path), protocol)
    train_rows, test_rows = _rows(split.train), _rows(split.test)
    fit_rows, val_rows = _rows(data.fit), _rows(data.val)
    assert val_rows and fit_rows
    assert val_rows <= train_rows and fit_rows <= train_rows
    assert not (val_rows | fit_rows) & test_rows
    assert not fit_rows & val_rows
    assert len(fit_rows) + len(val_rows) == len(train_rows)
    # every held-out positive is a liked validation event of that user, never a test event
    val_pairs = {(u, i) for u, i, _ in val_rows}
    test_pairs = {(u, i) for u, i, _ in test_rows}
    for u, pos in zip(data.validation.users, data.validation.candidates[:, 0], strict=True):
        assert (int(u), int(pos)) in val_pairs
        assert (int(u), int(pos)) not in test_pairs
    if protocol != "random":
        # time-ordered protocols: validation events come after the user's fit events
        # and before the user's test events
        for u in range(split.n_users):
            fit_ts = data.fit.timestamps[data.fit.user_idx == u]
            val_ts = data.val.timestamps[data.val.user_idx == u]
            test_ts = split.test.timestamps[split.test.user_idx == u]
            if len(val_ts) and len(fit_ts):
                assert val_ts.min() >= fit_ts.max()
            if len(val_ts) and len(test_ts):
                assert val_ts.max() <= test_ts.min()
    if protocol == "leave-last-one-out":
        assert np.all(np.bincount(data.val.user_idx, minlength=split.n_users) == 1)


def test_pairs_follow_the_liked_history(tmp_path: Path) -> None:
    """Anchor = titles of the previous liked fit items (at most history_len), positive = next."""
    items = syn.catalog()
    cfg = syn.config(tmp_path, history_len=3, max_examples_per_user=None)
    data = build_training_data(syn.split().train, items, cfg, "temporal")
    titles = list(items.features["title"])
    fit = data.fit
    for k in (0, 5, len(data) - 1):
        u, pos = int(data.users[k]), int(data.positive_items[k])
        rows = np.flatnonzero((fit.user_idx == u) & (fit.ratings >= 4.0))
        rows = rows[np.argsort(fit.timestamps[rows], kind="stable")]
        seq = fit.item_idx[rows].tolist()
        t = seq.index(pos)
        expected = "; ".join(titles[i] for i in seq[max(0, t - 3) : t])
        assert data.anchors[k] == expected
        assert data.positives[k] == str(items.text[pos])
    disliked = {int(i) for i, r in zip(fit.item_idx, fit.ratings, strict=True) if r < 4.0}
    liked_pos = {(int(u), int(i)) for u, i in zip(data.users, data.positive_items, strict=True)}
    liked_fit = {
        (int(u), int(i))
        for u, i, r in zip(fit.user_idx, fit.item_idx, fit.ratings, strict=True)
        if r >= 4.0
    }
    assert liked_pos <= liked_fit
    assert disliked  # the synthetic data has dislikes, and none is a positive
    # each user with n liked fit items gives n - 1 pairs
    per_user = np.bincount(data.users, minlength=fit.n_users)
    for u in range(fit.n_users):
        n_liked = int(((fit.user_idx == u) & (fit.ratings >= 4.0)).sum())
        assert per_user[u] == max(n_liked - 1, 0)


def test_candidates_are_untouched_items(tmp_path: Path) -> None:
    split = syn.split()
    data = build_training_data(split.train, syn.catalog(), syn.config(tmp_path), "temporal")
    cand = data.validation.candidates
    assert cand.shape == (len(data.validation), 21)
    touched = split.train.matrix.tolil().rows
    for row, u in enumerate(data.validation.users):
        negatives = set(cand[row, 1:].tolist())
        assert len(negatives) == 20
        assert not negatives & set(touched[int(u)])
        assert int(cand[row, 0]) in touched[int(u)]
    # a pool bounds the distinct negatives; too small a pool is a clear error
    pooled = build_training_data(
        split.train,
        syn.catalog(),
        syn.config(tmp_path, negative_pool=34, n_negatives=5),
        "temporal",
    )
    assert len(np.unique(pooled.validation.candidates[:, 1:])) <= 34
    with pytest.raises(DataError, match="negative_pool"):
        build_training_data(
            split.train, syn.catalog(), syn.config(tmp_path, negative_pool=10), "temporal"
        )
    # seeded: the same config draws the same candidates
    again = build_training_data(split.train, syn.catalog(), syn.config(tmp_path), "temporal")
    np.testing.assert_array_equal(again.validation.candidates, cand)


def test_too_many_negatives_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="n_negatives"):
        build_training_data(
            syn.split().train, syn.catalog(), syn.config(tmp_path, n_negatives=39), "temporal"
        )
    with pytest.raises(DataError, match="unknown validation kind"):
        build_training_data(syn.split().train, syn.catalog(), syn.config(tmp_path), "weekly")


def _reference_metrics(scores: np.ndarray) -> tuple[float, float]:
    """Closed form with one relevant item: rank r = 1 + #(negatives scoring >= the positive)."""
    ndcg, hits = [], []
    for row in scores:
        r = 1 + int(np.sum(row[1:] >= row[0]))
        ndcg.append(1.0 / math.log2(r + 1) if r <= 10 else 0.0)
        hits.append(1.0 if r <= 10 else 0.0)
    return float(np.mean(ndcg)), float(np.mean(hits))


def test_rank_metrics_match_the_closed_form() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(300, 100))
    scores[:50, 0] += 3.0  # some positives near the top
    got = rank_metrics(scores)
    ndcg, recall = _reference_metrics(scores)
    assert got["ndcg@10"] == pytest.approx(ndcg, abs=1e-12)
    assert got["recall@10"] == pytest.approx(recall, abs=1e-12)
    # coarse scores with many ties: the positive ranks after every tied negative
    coarse = np.round(scores, 0)
    got = rank_metrics(coarse)
    ndcg, recall = _reference_metrics(coarse)
    assert got["ndcg@10"] == pytest.approx(ndcg, abs=1e-12)
    assert got["recall@10"] == pytest.approx(recall, abs=1e-12)
    # the evaluation package's metrics on the same ranking (positive placed after its ties)
    from abrec.evaluation.metrics import ndcg_at_k, recall_at_k

    order = np.argsort(-coarse[:, ::-1], axis=1, kind="stable")[:, :10]
    topk = (coarse.shape[1] - 1) - order
    relevant = sp.csr_matrix(
        (np.ones(len(coarse)), (np.arange(len(coarse)), np.zeros(len(coarse), dtype=int))),
        shape=coarse.shape,
    )
    assert got["ndcg@10"] == pytest.approx(np.mean(ndcg_at_k(topk, relevant, 10)), abs=1e-12)
    assert got["recall@10"] == pytest.approx(np.mean(recall_at_k(topk, relevant, 10)), abs=1e-12)
    # a collapsed encoder (all scores equal) earns nothing
    assert rank_metrics(np.ones((4, 100))) == {"ndcg@10": 0.0, "recall@10": 0.0}
    with pytest.raises(ValueError):
        rank_metrics(np.ones((3, 1)))


def test_rank_metrics_match_the_evaluation_metrics() -> None:
    """The same numbers as the evaluation package's NDCG@10 and recall@10 on the ranked lists
    (an independent implementation: sorting, then the protocol's metric functions)."""
    import scipy.sparse as sp

    from abrec.evaluation.metrics import ndcg_at_k, recall_at_k

    rng = np.random.default_rng(8)
    scores = np.round(rng.normal(size=(200, 30)), 1)
    scores[:60, 0] += 2.0
    n, m = scores.shape
    # the positive last among equal scores: sort the reversed columns stably
    topk = (m - 1) - np.argsort(-scores[:, ::-1], axis=1, kind="stable")[:, :10]
    relevant = sp.csr_matrix((np.ones(n), (np.arange(n), np.zeros(n, dtype=int))), shape=(n, m))
    got = rank_metrics(scores)
    assert got["ndcg@10"] == pytest.approx(float(np.mean(ndcg_at_k(topk, relevant, 10))), abs=1e-12)
    assert got["recall@10"] == pytest.approx(
        float(np.mean(recall_at_k(topk, relevant, 10))), abs=1e-12
    )


def test_epoch_batches_have_no_repeated_item_and_are_seeded() -> None:
    rng = np.random.default_rng(0)
    items = rng.zipf(1.5, size=500) % 60  # a few very popular items
    batches = epoch_batches(items, 16, seed=1, epoch=1)
    for b in batches:
        assert 2 <= len(b) <= 16
        assert len(set(items[b].tolist())) == len(b)
    used = np.concatenate(batches)
    assert len(used) == len(set(used.tolist()))  # each pair at most once
    # only pairs of an item too popular to fit once per batch are dropped (it is in every batch)
    dropped = np.setdiff1d(np.arange(len(items)), used)
    counts = np.bincount(items)
    assert set(items[dropped].tolist()) == {int(np.argmax(counts))}
    assert all(int(np.argmax(counts)) in items[b] for b in batches)
    # without such an item at most a lone last pair (no negative for it) is dropped
    even = np.tile(np.arange(50), 6)
    assert sum(len(b) for b in epoch_batches(even, 16, seed=1, epoch=1)) >= len(even) - 1
    again = epoch_batches(items, 16, seed=1, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = epoch_batches(items, 16, seed=1, epoch=2)
    assert not np.array_equal(np.concatenate(other), used)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lr"):
        parse_train_config({"lr": 0.1})
    with pytest.raises(ConfigError, match="learning_rate"):
        parse_train_config({"learning_rate": -1.0})
    with pytest.raises(ConfigError, match="alternatives"):
        parse_train_config({"freeze_layers": 2, "lora": {"r": 4}})
    with pytest.raises(ConfigError, match="device"):
        parse_train_config({"device": "tpu"})
    with pytest.raises(ConfigError, match="dropout"):
        parse_train_config({"dropout": 1.5})
    cfg = parse_train_config({"lora": {"r": 4}, "output_dir": str(tmp_path)})
    assert isinstance(cfg, TrainConfig) and cfg.lora is not None and cfg.lora.r == 4
