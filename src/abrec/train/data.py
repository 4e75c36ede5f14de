"""Training pairs and the validation set, built from the TRAINING period only.

A validation part is carved from the protocol's training interactions following the protocol's
kind (temporal: the last share of each user's training events; random: a random share;
leave-last-one-out: each user's last event); the rest ("fit") makes the training pairs:
anchor = titles of the user's last `history_len` liked items before the target (oldest first,
joined with "; "), positive = the target liked item's full text. A like is a rating
>= `relevance_threshold` (every event when there are no ratings). Events are ordered by
(timestamp, external item id), the protocol's order; without timestamps, by row order.

The validation task mirrors training: for each validation user, the held-out positive is the
user's first liked validation event, the anchor is built from the fit history, and the positive
is ranked among `n_negatives` catalogue items drawn once (seeded) from the items the user never
touched in the training period, out of a seeded pool of `negative_pool` catalogue items (so a
validation pass encodes at most that many item texts). Ranking ~100 candidates per user is
cheap on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abrec.data import splits
from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import DataError
from abrec.train.config import TrainConfig


@dataclass(frozen=True, eq=False)
class ValidationSet:
    """Users to rank for, their anchor texts and their candidate items (column 0: the positive)."""

    users: np.ndarray
    anchors: list[str]
    candidates: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Everything the trainer reads: pairs, the validation set and the catalogue texts."""

    anchors: list[str]
    positives: list[str]
    positive_items: np.ndarray
    users: np.ndarray
    validation: ValidationSet
    item_text: list[str]
    fit: Interactions
    val: Interactions
    protocol: str

    def __len__(self) -> int:
        return len(self.anchors)


def carve_validation(
    train: Interactions, protocol: str, fraction: float, seed: int
) -> tuple[Interactions, Interactions]:
    """(fit, validation) from a protocol's training interactions, following the protocol's kind."""
    return splits.validation_split(train, protocol, fraction, seed)


def liked_sequences(inter: Interactions, threshold: float) -> list[np.ndarray]:
    """Per user (index), the liked items in event order (timestamp, external item id, row)."""
    liked = np.ones(len(inter), dtype=bool) if inter.ratings is None else inter.ratings >= threshold
    rows = np.flatnonzero(liked)
    try:
        id_rank = np.argsort(np.argsort(inter.item_ids, kind="stable"), kind="stable")
    except TypeError:
        id_rank = np.arange(inter.n_items)
    ts = inter.timestamps[rows] if inter.timestamps is not None else np.zeros(len(rows))
    items = inter.item_idx[rows]
    order = np.lexsort((rows, id_rank[items], ts, inter.user_idx[rows]))
    users, items = inter.user_idx[rows][order], items[order]
    bounds = np.searchsorted(users, np.arange(inter.n_users + 1))
    return [items[bounds[u] : bounds[u + 1]] for u in range(inter.n_users)]


def item_titles(items: ItemCatalog) -> list[str]:
    """Short item names for anchors: the catalogue's `title` feature, else the full text."""
    if items.features is not None and "title" in items.features.columns:
        return [str(t) for t in items.features["title"]]
    return [str(t) for t in items.text]


def anchor_text(titles: list[str], history: np.ndarray) -> str:
    """The anchor: titles of the given items (oldest first), joined with '; '."""
    return "; ".join(titles[int(i)] for i in history)


def _pairs(
    seqs: list[np.ndarray], titles: list[str], texts: list[str], cfg: TrainConfig
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    anchors: list[str] = []
    positives: list[str] = []
    pos_items: list[int] = []
    users: list[int] = []
    for u, seq in enumerate(seqs):
        targets = range(1, len(seq))
        if cfg.max_examples_per_user is not None:
            targets = targets[-cfg.max_examples_per_user :]
        for t in targets:
            anchors.append(anchor_text(titles, seq[max(0, t - cfg.history_len) : t]))
            positives.append(texts[int(seq[t])])
            pos_items.append(int(seq[t]))
            users.append(u)
    return anchors, positives, np.asarray(pos_items, np.int64), np.asarray(users, np.int64)


def build_validation(
    fit: Interactions, val: Interactions, titles: list[str], cfg: TrainConfig
) -> ValidationSet:
    """Validation users, anchors from their fit history and seeded candidate lists."""
    fit_seqs = liked_sequences(fit, cfg.relevance_threshold)
    val_seqs = liked_sequences(val, cfg.relevance_threshold)
    users = np.array(
        [u for u in range(fit.n_users) if len(fit_seqs[u]) and len(val_seqs[u])], dtype=np.int64
    )
    rng = np.random.default_rng([cfg.seed, 1])
    if cfg.val_users is not None and len(users) > cfg.val_users:
        users = np.sort(rng.choice(users, size=cfg.val_users, replace=False))
    n_items, n_neg = fit.n_items, cfg.n_negatives
    pool = np.arange(n_items)
    if cfg.negative_pool is not None and cfg.negative_pool < n_items:
        pool = np.sort(rng.choice(n_items, size=cfg.negative_pool, replace=False))
    touched = (fit.matrix + val.matrix).tocsr()
    candidates = np.empty((len(users), n_neg + 1), dtype=np.int64)
    anchors = []
    for row, u in enumerate(users):
        seen = touched.indices[touched.indptr[u] : touched.indptr[u + 1]]
        available = pool[~np.isin(pool, seen)]
        if len(available) < n_neg:
            raise DataError(
                f"validation user {fit.user_ids[u]!r} has only {len(available)} untouched "
                f"items in the negative pool but n_negatives = {n_neg}; lower n_negatives "
                "or raise negative_pool"
            )
        candidates[row, 0] = val_seqs[u][0]
        candidates[row, 1:] = rng.choice(available, size=n_neg, replace=False)
        anchors.append(anchor_text(titles, fit_seqs[u][-cfg.history_len :]))
    return ValidationSet(users=users, anchors=anchors, candidates=candidates)


def build_training_data(
    train: Interactions, items: ItemCatalog, cfg: TrainConfig, protocol: str
) -> TrainingData:
    """Pairs and validation set from a protocol's training interactions (never its test part).

    Args:
        train: the protocol's training interactions (`ProtocolSplit.train`).
        items: the catalogue, aligned with the interactions' item columns.
        cfg: the training config (history length, validation share, negatives, seed).
        protocol: the protocol's name; decides the kind of validation split.
    """
    if len(items) != train.n_items:
        raise DataError(
            f"the catalogue has {len(items)} items but the interactions {train.n_items}"
        )
    fit, val = carve_validation(train, protocol, cfg.val_fraction, cfg.seed)
    titles, texts = item_titles(items), [str(t) for t in items.text]
    anchors, positives, pos_items, users = _pairs(
        liked_sequences(fit, cfg.relevance_threshold), titles, texts, cfg
    )
    if len(anchors) < cfg.batch_size:
        raise DataError(
            f"only {len(anchors)} training pairs (a user needs two liked items in the fit part); "
            f"need at least batch_size = {cfg.batch_size}"
        )
    validation = build_validation(fit, val, titles, cfg)
    if len(validation) == 0:
        raise DataError("no validation user has a liked held-out item; raise val_fraction")
    return TrainingData(
        anchors=anchors,
        positives=positives,
        positive_items=pos_items,
        users=users,
        validation=validation,
        item_text=texts,
        fit=fit,
        val=val,
        protocol=protocol,
    )


__all__ = [
    "TrainingData",
    "ValidationSet",
    "anchor_text",
    "build_training_data",
    "build_validation",
    "carve_validation",
    "item_titles",
    "liked_sequences",
]
