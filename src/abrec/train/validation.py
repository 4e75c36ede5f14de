"""The validation ranking metric and the per-epoch batch plan.

Validation ranks, for each validation user, the held-out positive among `n_negatives` sampled
items by cosine of the anchor's and the items' vectors, and reports NDCG@10 and recall@10 (one
relevant item: NDCG is 1 / log2(1 + rank) within the top 10, recall@10 is the hit rate; the
definitions of `abrec.evaluation.metrics`, computed here so that `abrec.train` does not import
the evaluation package, which imports the models that may use `abrec.train`). A tie puts the
positive below the tied negatives, so a collapsed encoder (every vector equal) scores 0, not 1.
It encodes the validation anchors and the distinct candidate items once per epoch: cheap on a CPU.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from abrec.train.data import ValidationSet

K = 10


def rank_metrics(scores: np.ndarray, k: int = K) -> dict[str, float]:
    """Mean NDCG@k and recall@k when column 0 of each row of `scores` is the one relevant item.

    Ties are pessimistic: the positive ranks after every candidate scoring the same. With fewer
    than k candidates, k is their number (and names the keys).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2 or len(scores) == 0:
        raise ValueError(f"scores must be [n_users, >= 2 candidates], got shape {scores.shape}")
    k = min(k, scores.shape[1])
    rank = 1 + np.sum(scores[:, 1:] >= scores[:, :1], axis=1)
    hit = rank <= k
    ndcg = np.where(hit, 1.0 / np.log2(rank + 1.0), 0.0)
    return {f"ndcg@{k}": float(np.mean(ndcg)), f"recall@{k}": float(np.mean(hit))}


def validation_scores(
    model: Any, validation: ValidationSet, item_text: list[str], batch_size: int
) -> np.ndarray:
    """Cosine of each validation anchor with its candidates under `model` (eval mode)."""
    uniq, inverse = np.unique(validation.candidates, return_inverse=True)
    kw = {
        "batch_size": batch_size,
        "convert_to_numpy": True,
        "normalize_embeddings": True,
        "show_progress_bar": False,
    }
    anchors = np.asarray(model.encode(list(validation.anchors), **kw), dtype=np.float32)
    items = np.asarray(model.encode([item_text[int(i)] for i in uniq], **kw), dtype=np.float32)
    cand = items[inverse.reshape(validation.candidates.shape)]
    return np.einsum("ucd,ud->uc", cand, anchors)


def epoch_batches(
    positive_items: np.ndarray, batch_size: int, seed: int, epoch: int
) -> list[np.ndarray]:
    """A seeded shuffle of the pairs cut into batches with no positive item twice per batch.

    A repeated item in one batch would be a false in-batch negative. A pair that would repeat
    one is deferred to the next batch; batches of fewer than 2 pairs are dropped (no negative).
    The plan depends only on (seed, epoch), so a resumed run sees the same batches.
    """
    rng = np.random.default_rng([seed, 2, epoch])
    pending = deque(rng.permutation(len(positive_items)).tolist())
    batches: list[np.ndarray] = []
    while pending:
        batch: list[int] = []
        seen: set[int] = set()
        skipped: list[int] = []
        while pending and len(batch) < batch_size:
            i = pending.popleft()
            item = int(positive_items[i])
            if item in seen:
                skipped.append(i)
            else:
                batch.append(i)
                seen.add(item)
        pending.extendleft(reversed(skipped))
        if len(batch) >= 2:
            batches.append(np.asarray(batch, dtype=np.int64))
    return batches


__all__ = ["K", "epoch_batches", "rank_metrics", "validation_scores"]
