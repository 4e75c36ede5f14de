"""Vectorised offline ranking metrics over whole user batches (no per-user Python loops).

Inputs are plain arrays: `topk` is an ``[n_users, K]`` integer array of item indices in
rank order (best first) and `relevant` a binary ``csr_matrix [n_users, n_items]`` whose
row ``u`` marks the items relevant to the user in row ``u`` of `topk`.

Definitions (DESIGN.md, protocol ``ml-small-temporal-v1``), for a cut-off ``k <= K``,
``hit_r = 1`` when the item at rank ``r`` (1-based) is relevant and ``R = |relevant|``:

- ``precision@k = sum_{r<=k} hit_r / k``
- ``recall@k = sum_{r<=k} hit_r / R``
- ``ndcg@k = DCG / IDCG`` with binary gains, ``DCG = sum_{r<=k} hit_r / log2(r + 1)`` and
  ``IDCG = sum_{r <= min(R, k)} 1 / log2(r + 1)``
- ``map@k = sum_{r<=k} hit_r * precision@r / min(R, k)``
- ``mrr@k = 1 / r*`` for the first relevant rank ``r* <= k``, else 0
- ``hit_rate@k = 1`` if any of the first ``k`` items is relevant, else 0
- ``auc``: per user, the probability that a relevant candidate outscores a non-relevant
  candidate (ties count one half), over all items not excluded for that user (the
  training items); relevant items that are excluded are not candidates.
- ``coverage@k``: share of catalogue items that appear in at least one user's top-k.
- ``novelty@k``: mean self-information ``-log2 p(i)`` of the top-k items, where
  ``p(i) = (n_users_with_i + 1) / (n_train_users + 1)`` is the item's (add-one smoothed)
  share of training users, so items never seen in training have finite novelty.
- ``diversity@k`` (intra-list diversity): mean over the ``k (k - 1)`` ordered pairs of
  distinct list positions of ``1 - cos(e_i, e_j)`` for item embeddings ``e``.

Users with no relevant item get NaN for the relevance metrics (they are not scored).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from abrec.errors import DataError

RANKING_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")
_BITMAP_CELLS = 1 << 22  # users x items cells per batch in `hit_matrix` (4 MB)


def _check_topk(topk: np.ndarray, n_items: int | None = None) -> np.ndarray:
    topk = np.asarray(topk)
    if topk.ndim != 2:
        raise DataError(f"topk must be a 2-D array [n_users, K], got shape {topk.shape}")
    if not np.issubdtype(topk.dtype, np.integer):
        raise DataError(f"topk must hold integer item indices, got dtype {topk.dtype}")
    if topk.size:
        lo, hi = int(topk.min()), int(topk.max())
        if lo < 0 or (n_items is not None and hi >= n_items):
            raise DataError(
                f"topk holds item index out of range [0, {n_items}): min {lo}, max {hi}; "
                "pass dense item indices of the catalogue"
            )
    return topk.astype(np.int64, copy=False)


def _check_relevant(relevant: sp.spmatrix | sp.sparray, n_users: int) -> sp.csr_matrix:
    if not sp.issparse(relevant):
        raise DataError("relevant must be a scipy.sparse matrix [n_users, n_items]")
    rel = sp.csr_matrix(relevant)
    if rel.shape[0] != n_users:
        raise DataError(
            f"relevant has {rel.shape[0]} rows but topk has {n_users} users; "
            "pass the relevance rows of the same users, in the same order"
        )
    rel.sum_duplicates()
    rel.eliminate_zeros()
    rel.sort_indices()
    return rel


def _check_ks(ks: Iterable[int], max_k: int) -> list[int]:
    out = [int(k) for k in ks]
    if not out:
        raise DataError("ks must name at least one cut-off k")
    bad = [k for k in out if k < 1 or k > max_k]
    if bad:
        raise DataError(f"cut-offs {bad} are outside [1, {max_k}]; topk has {max_k} columns")
    return out


def hit_matrix(topk: np.ndarray, relevant: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Boolean ``[n_users, K]``: whether ``topk[u, r]`` is relevant for user ``u``."""
    topk = _check_topk(topk)
    rel = _check_relevant(relevant, topk.shape[0])
    topk = _check_topk(topk, rel.shape[1])
    n_users, big_k = topk.shape
    n_items = int(rel.shape[1])
    # Per batch of users, mark their relevant items in a reusable flat bitmap that stays
    # cache-sized, gather the top-k cells, then clear only the cells that were set.
    batch = max(1, min(n_users, _BITMAP_CELLS // max(n_items, 1)))
    bitmap = np.zeros(batch * n_items, dtype=bool)
    out = np.empty((n_users, big_k), dtype=bool)
    indptr, indices = rel.indptr, rel.indices.astype(np.int64)
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        local = np.arange(stop - start, dtype=np.int64)
        rows = np.repeat(local, np.diff(indptr[start : stop + 1]))
        cells = rows * n_items + indices[indptr[start] : indptr[stop]]
        bitmap[cells] = True
        out[start:stop] = bitmap[local[:, None] * n_items + topk[start:stop]]
        bitmap[cells] = False
    return out


def _n_relevant(relevant: sp.csr_matrix) -> np.ndarray:
    return np.diff(relevant.indptr).astype(np.float64)


def metrics_from_hits(
    hits: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user ranking metrics (`RANKING_METRICS` at each k) from a hit matrix."""
    hits = np.asarray(hits, dtype=bool)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    max_k = hits.shape[1]
    ks = _check_ks(ks, max_k)
    kmax = max(ks)
    n_users = hits.shape[0]
    # Work on hit positions only (row-major, so ranks increase within each user).
    rows, cols = np.nonzero(hits[:, :kmax])
    rank = cols.astype(np.float64) + 1.0
    first_of_row = np.ones(rows.size, dtype=bool)
    first_of_row[1:] = rows[1:] != rows[:-1]
    starts = np.flatnonzero(first_of_row)
    run_start = np.repeat(starts, np.diff(np.append(starts, rows.size)))
    nth_hit = (np.arange(rows.size) - run_start + 1).astype(np.float64)  # hits up to here
    gain_dcg = 1.0 / np.log2(rank + 1.0)
    gain_ap = nth_hit / rank
    first = np.full(n_users, np.inf)
    first[rows[first_of_row]] = rank[first_of_row]
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, kmax + 2)))])
    has_rel = n_rel > 0
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in ks:
            inside = cols < k
            r = rows[inside]
            n_hit = np.bincount(r, minlength=n_users).astype(np.float64)
            dcg = np.bincount(r, weights=gain_dcg[inside], minlength=n_users)
            ap = np.bincount(r, weights=gain_ap[inside], minlength=n_users)
            cap = np.minimum(n_rel, k)
            idcg = ideal[cap.astype(np.int64)]
            out[f"precision@{k}"] = np.where(has_rel, n_hit / k, np.nan)
            out[f"recall@{k}"] = np.where(has_rel, n_hit / n_rel, np.nan)
            out[f"ndcg@{k}"] = np.where(has_rel, dcg / idcg, np.nan)
            out[f"map@{k}"] = np.where(has_rel, ap / cap, np.nan)
            mrr = np.where(first <= k, 1.0 / first, 0.0)
            out[f"mrr@{k}"] = np.where(has_rel, mrr, np.nan)
            out[f"hit_rate@{k}"] = np.where(has_rel, (n_hit > 0).astype(np.float64), np.nan)
    return out


def ranking_metrics(
    topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Precision, recall, NDCG, MAP, MRR and hit rate at every k, one value per user."""
    topk = _check_topk(topk)
    rel = _check_relevant(relevant, topk.shape[0])
    return metrics_from_hits(hit_matrix(topk, rel), _n_relevant(rel), ks)


def _single(name: str, topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    return ranking_metrics(topk, relevant, [k])[f"{name}@{k}"]


def precision_at_k(topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user precision@k (hits in the first k divided by k)."""
    return _single("precision", topk, relevant, k)


def recall_at_k(topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user recall@k (hits in the first k divided by the number of relevant items)."""
    return _single("recall", topk, relevant, k)


def ndcg_at_k(topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user NDCG@k with binary gains and IDCG over min(|relevant|, k)."""
    return _single("ndcg", topk, relevant, k)


def map_at_k(topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user average precision@k normalised by min(|relevant|, k)."""
    return _single("map", topk, relevant, k)


def mrr_at_k(topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user reciprocal rank of the first relevant item within k (0 if none)."""
    return _single("mrr", topk, relevant, k)


def hit_rate_at_k(topk: np.ndarray, relevant: sp.spmatrix | sp.sparray, k: int) -> np.ndarray:
    """Per-user indicator that at least one of the first k items is relevant."""
    return _single("hit_rate", topk, relevant, k)


def auc_scores(
    scores: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    exclude: sp.spmatrix | sp.sparray | None = None,
) -> np.ndarray:
    """Per-user AUC from full score rows, over candidates = items not in `exclude`.

    Args:
        scores: ``[n_users, n_items]`` model scores (higher is better); NaN is invalid.
        relevant: binary ``[n_users, n_items]`` relevant items (positives).
        exclude: binary ``[n_users, n_items]`` items that are not candidates (e.g. training
            items); excluded relevant items are not positives.
    Returns:
        AUC per user; NaN when a user has no positive or no negative candidate.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise DataError(f"scores must be 2-D [n_users, n_items], got shape {scores.shape}")
    if np.isnan(scores).any():
        raise DataError("scores contain NaN; the model must return finite scores or -inf")
    n_users, n_items = scores.shape
    rel = _check_relevant(relevant, n_users)
    if rel.shape[1] != n_items:
        raise DataError(f"relevant has {rel.shape[1]} columns but scores have {n_items}")
    excl = np.zeros((n_users, n_items), dtype=bool)
    if exclude is not None:
        ex = sp.csr_matrix(exclude)
        if ex.shape != scores.shape:
            raise DataError(f"exclude has shape {ex.shape} but scores have {scores.shape}")
        ex.eliminate_zeros()
        coo = ex.tocoo()
        excl[coo.row, coo.col] = True
    pos = rel.toarray() > 0
    pos &= ~excl
    # Candidates keep their order and sit strictly above every excluded item, so the rank
    # among candidates is the rank among all items minus the number of excluded items.
    lowest = np.finfo(np.float64).min
    s = np.where(excl, -np.inf, np.maximum(scores, lowest))
    ranks = rankdata(s, method="average", axis=1)
    n_excl = excl.sum(axis=1)
    n_pos = pos.sum(axis=1).astype(np.float64)
    n_neg = (n_items - n_excl - n_pos).astype(np.float64)
    rank_sum = np.where(pos, ranks - n_excl[:, None], 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def catalog_coverage(topk: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue's `n_items` items that appear in some user's top-k."""
    topk = _check_topk(topk, n_items)
    if k is not None:
        _check_ks([k], topk.shape[1])
        topk = topk[:, :k]
    if n_items <= 0:
        raise DataError("n_items must be positive")
    seen = np.zeros(n_items, dtype=bool)
    seen[topk.ravel()] = True
    return float(seen.mean())


def self_information(item_user_counts: np.ndarray, n_train_users: int) -> np.ndarray:
    """Per-item self-information ``-log2((count + 1) / (n_train_users + 1))``."""
    counts = np.asarray(item_user_counts, dtype=np.float64)
    if n_train_users < 0 or (counts < 0).any() or (counts > n_train_users).any():
        raise DataError("item counts must lie in [0, n_train_users]")
    return np.asarray(-np.log2((counts + 1.0) / (n_train_users + 1.0)))


def novelty_at_k(
    topk: np.ndarray, item_user_counts: np.ndarray, n_train_users: int, k: int
) -> np.ndarray:
    """Per-user mean self-information of the top-k items (training popularity)."""
    info = self_information(item_user_counts, n_train_users)
    topk = _check_topk(topk, len(info))
    _check_ks([k], topk.shape[1])
    return np.asarray(info[topk[:, :k]].mean(axis=1))


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        raise DataError(f"item embeddings must be 2-D [n_items, dim], got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)


def intra_list_diversity(
    topk: np.ndarray, item_embeddings: np.ndarray, k: int, batch_size: int = 4096
) -> np.ndarray:
    """Per-user mean pairwise cosine distance ``1 - cos`` between the top-k items.

    Uses ``sum_{i != j} cos(e_i, e_j) = ||sum_i e_i||^2 - sum_i ||e_i||^2`` on unit rows,
    so the cost is O(n k d) with no k x k matrices. Items with a zero embedding have
    cosine 0 to everything. NaN when k < 2.
    """
    unit = _unit_rows(item_embeddings)
    topk = _check_topk(topk, unit.shape[0])
    _check_ks([k], topk.shape[1])
    n = topk.shape[0]
    if k < 2:
        return np.full(n, np.nan)
    sq_norm = (unit * unit).sum(axis=1)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        idx = topk[start : start + batch_size, :k]
        v = unit[idx].sum(axis=1)
        pair_cos = (v * v).sum(axis=1) - sq_norm[idx].sum(axis=1)
        out[start : start + batch_size] = 1.0 - pair_cos / (k * (k - 1))
    return out
