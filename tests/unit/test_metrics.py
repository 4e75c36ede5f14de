"""Offline metrics: hand-computed values and a naive per-user reference on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from abrec.errors import DataError
from abrec.evaluation import metrics as M


def _rel(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


# ---------------------------------------------------------------- hand-computed values
def test_hand_computed_single_user() -> None:
    # ranks 1..5: items 3, 7, 1, 9, 4; relevant {7, 4, 8} -> hits at ranks 2 and 5.
    topk = np.array([[3, 7, 1, 9, 4]])
    rel = _rel([[7, 4, 8]], 10)
    m = M.ranking_metrics(topk, rel, [3, 5])
    assert m["precision@3"][0] == pytest.approx(1 / 3)
    assert m["precision@5"][0] == pytest.approx(2 / 5)
    assert m["recall@3"][0] == pytest.approx(1 / 3)
    assert m["recall@5"][0] == pytest.approx(2 / 3)
    dcg5 = 1 / math.log2(3) + 1 / math.log2(6)
    idcg5 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@5"][0] == pytest.approx(dcg5 / idcg5)
    assert m["ndcg@3"][0] == pytest.approx((1 / math.log2(3)) / idcg5)
    # AP@5: (1/2 + 2/5) / min(3, 5)
    assert m["map@5"][0] == pytest.approx((0.5 + 0.4) / 3)
    assert m["map@3"][0] == pytest.approx(0.5 / 3)
    assert m["mrr@5"][0] == pytest.approx(0.5)
    assert m["hit_rate@3"][0] == 1.0


def test_idcg_and_map_cap_at_k() -> None:
    # 4 relevant items, k=2, both top-2 relevant -> NDCG and MAP are 1, recall 0.5.
    topk = np.array([[0, 1, 5]])
    rel = _rel([[0, 1, 2, 3]], 6)
    m = M.ranking_metrics(topk, rel, [2])
    assert m["ndcg@2"][0] == pytest.approx(1.0)
    assert m["map@2"][0] == pytest.approx(1.0)
    assert m["recall@2"][0] == pytest.approx(0.5)
    assert m["precision@2"][0] == pytest.approx(1.0)


def test_no_hit_and_no_relevant_users() -> None:
    topk = np.array([[0, 1], [2, 3]])
    rel = _rel([[5], []], 6)
    m = M.ranking_metrics(topk, rel, [2])
    for name in M.RANKING_METRICS:
        assert m[f"{name}@2"][0] == 0.0
        assert np.isnan(m[f"{name}@2"][1])


def test_single_metric_functions_agree() -> None:
    topk = np.array([[3, 7, 1, 9, 4]])
    rel = _rel([[7, 4, 8]], 10)
    assert M.precision_at_k(topk, rel, 5)[0] == pytest.approx(0.4)
    assert M.recall_at_k(topk, rel, 5)[0] == pytest.approx(2 / 3)
    assert M.mrr_at_k(topk, rel, 1)[0] == 0.0
    assert M.hit_rate_at_k(topk, rel, 1)[0] == 0.0
    assert M.map_at_k(topk, rel, 2)[0] == pytest.approx(0.5 / 2)
    assert M.ndcg_at_k(topk, rel, 2)[0] == pytest.approx(
        (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    )


# ---------------------------------------------------------------- naive reference
def _naive(topk: np.ndarray, rel_sets: list[set[int]], k: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {n: [] for n in M.RANKING_METRICS}
    for items, rel in zip(topk.tolist(), rel_sets, strict=True):
        if not rel:
            for n in out:
                out[n].append(float("nan"))
            continue
        lst = items[:k]
        hits = [1 if i in rel else 0 for i in lst]
        out["precision"].append(sum(hits) / k)
        out["recall"].append(sum(hits) / len(rel))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
        out["ndcg"].append(dcg / idcg)
        ap, found = 0.0, 0
        for r, h in enumerate(hits):
            if h:
                found += 1
                ap += found / (r + 1)
        out["map"].append(ap / min(len(rel), k))
        first = next((r for r, h in enumerate(hits) if h), None)
        out["mrr"].append(0.0 if first is None else 1 / (first + 1))
        out["hit_rate"].append(float(any(hits)))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, big_k = 300, 60, 20
    topk = np.stack([rng.permutation(n_items)[:big_k] for _ in range(n_users)])
    dense = rng.random((n_users, n_items)) < rng.uniform(0.0, 0.2, size=(n_users, 1))
    rel = sp.csr_matrix(dense.astype(np.float32))
    rel_sets = [set(np.flatnonzero(row).tolist()) for row in dense]
    ks = [1, 3, 10, 20]
    got = M.ranking_metrics(topk, rel, ks)
    for k in ks:
        ref = _naive(topk, rel_sets, k)
        for name in M.RANKING_METRICS:
            np.testing.assert_allclose(
                got[f"{name}@{k}"], np.array(ref[name]), rtol=1e-12, equal_nan=True
            )


def test_hit_matrix_handles_unsorted_and_duplicate_csr() -> None:
    rel = sp.csr_matrix(
        (np.array([1.0, 1.0, 1.0, 0.0]), np.array([5, 2, 2, 1]), np.array([0, 3, 4])),
        shape=(2, 6),
    )
    topk = np.array([[2, 1, 5], [1, 0, 5]])
    np.testing.assert_array_equal(
        M.hit_matrix(topk, rel), [[True, False, True], [False, False, False]]
    )


def test_bad_inputs_raise_named_errors() -> None:
    rel = _rel([[1]], 4)
    with pytest.raises(DataError, match="out of range"):
        M.ranking_metrics(np.array([[0, 4]]), rel, [1])
    with pytest.raises(DataError, match="outside"):
        M.ranking_metrics(np.array([[0, 1]]), rel, [3])
    with pytest.raises(DataError, match="rows"):
        M.ranking_metrics(np.array([[0, 1], [1, 2]]), rel, [1])
    with pytest.raises(DataError, match="integer"):
        M.ranking_metrics(np.array([[0.0, 1.0]]), rel, [1])


# ---------------------------------------------------------------- AUC
def _naive_auc(scores: np.ndarray, rel: set[int], excl: set[int]) -> float:
    cands = [i for i in range(len(scores)) if i not in excl]
    pos = [i for i in cands if i in rel]
    neg = [i for i in cands if i not in rel]
    if not pos or not neg:
        return float("nan")
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if scores[p] > scores[q] else 0.5 if scores[p] == scores[q] else 0.0
    return total / (len(pos) * len(neg))


def test_auc_hand_computed() -> None:
    scores = np.array([[0.9, 0.1, 0.5, 0.5, -np.inf]])
    rel = _rel([[2, 4]], 5)
    # candidates exclude item 0; positives {2, 4}, negatives {1, 3}
    # pairs: (2,1)=1, (2,3)=0.5, (4,1)=0, (4,3)=0 -> 1.5/4
    excl = _rel([[0]], 5)
    assert M.auc_scores(scores, rel, excl)[0] == pytest.approx(1.5 / 4)


def test_auc_matches_naive_with_ties_and_exclusions() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 25
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float64)  # many ties
    rel_d = rng.random((n_users, n_items)) < 0.2
    ex_d = rng.random((n_users, n_items)) < 0.3
    got = M.auc_scores(scores, sp.csr_matrix(rel_d), sp.csr_matrix(ex_d))
    ref = [
        _naive_auc(scores[u], set(np.flatnonzero(rel_d[u])), set(np.flatnonzero(ex_d[u])))
        for u in range(n_users)
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True)


def test_auc_rejects_nan() -> None:
    with pytest.raises(DataError, match="NaN"):
        M.auc_scores(np.array([[np.nan, 1.0]]), _rel([[0]], 2))


# ---------------------------------------------------------------- beyond accuracy
def test_coverage() -> None:
    topk = np.array([[0, 1, 2], [0, 3, 4]])
    assert M.catalog_coverage(topk, 10) == pytest.approx(5 / 10)
    assert M.catalog_coverage(topk, 10, k=1) == pytest.approx(1 / 10)


def test_novelty_hand_computed() -> None:
    counts = np.array([9, 4, 0, 1])  # 9 training users
    topk = np.array([[0, 2], [1, 3]])
    got = M.novelty_at_k(topk, counts, 9, 2)
    exp0 = (-math.log2(10 / 10) - math.log2(1 / 10)) / 2
    exp1 = (-math.log2(5 / 10) - math.log2(2 / 10)) / 2
    np.testing.assert_allclose(got, [exp0, exp1])
    np.testing.assert_allclose(M.novelty_at_k(topk, counts, 9, 1), [0.0, 1.0])


def test_intra_list_diversity_matches_pairwise_reference() -> None:
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(30, 8))
    emb[5] = 0.0  # zero embedding has cosine 0 to everything
    topk = np.stack([rng.permutation(30)[:6] for _ in range(50)])
    topk[0, :2] = [5, 6]
    unit = np.divide(
        emb,
        np.linalg.norm(emb, axis=1, keepdims=True),
        out=np.zeros_like(emb),
        where=np.linalg.norm(emb, axis=1, keepdims=True) > 0,
    )
    for k in (2, 4, 6):
        ref = []
        for row in topk[:, :k]:
            dists = [
                1 - float(unit[i] @ unit[j])
                for a, i in enumerate(row)
                for b, j in enumerate(row)
                if a != b
            ]
            ref.append(sum(dists) / len(dists))
        np.testing.assert_allclose(M.intra_list_diversity(topk, emb, k, batch_size=7), ref)
    # hand-computed: orthogonal items have distance 1, identical ones 0
    e = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(
        M.intra_list_diversity(np.array([[0, 1, 2]]), e, 3), [(1 + 1 + 0) / 3]
    )
    assert np.isnan(M.intra_list_diversity(np.array([[0, 1]]), e, 1)[0])


def test_hit_matrix_batches_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    dense = rng.random((97, 40)) < 0.15
    topk = np.stack([rng.permutation(40)[:12] for _ in range(97)])
    expected = np.take_along_axis(dense, topk, axis=1)
    for cells in (40, 41 * 7, 1 << 22):  # 1 user, 7 users, all users per batch
        monkeypatch.setattr(M, "_BITMAP_CELLS", cells)
        np.testing.assert_array_equal(M.hit_matrix(topk, sp.csr_matrix(dense)), expected)
