"""Train/test splits over fixed index spaces, including protocol `ml-small-temporal-v1`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
import scipy.sparse as sp

from abrec.data.types import Interactions
from abrec.errors import DataError

PROTOCOL_NAME: Final = "ml-small-temporal-v1"
RELEVANCE_THRESHOLD: Final = 4.0

ValidationKind = Literal["temporal", "random", "leave-last-one-out"]
"""How a validation part is carved from a training period (mirrors the protocol's kind)."""

VALIDATION_KINDS: Final[tuple[str, ...]] = get_args(ValidationKind)

PROTOCOL_VALIDATION: Final[dict[str, ValidationKind]] = {
    PROTOCOL_NAME: "temporal",
    "temporal": "temporal",
    "random": "random",
    "leave-last-one-out": "leave-last-one-out",
}
"""Protocol name -> the kind of validation split a model carves from its training period."""


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")


def _n_train(n_u: np.ndarray, test_fraction: float) -> np.ndarray:
    """floor((1 - f) * n_u), robust to float error (e.g. 0.8 * 5 = 4 exactly)."""
    return np.floor(n_u * (1.0 - test_fraction) + 1e-9).astype(np.int64)


def _item_rank(inter: Interactions) -> np.ndarray:
    """Rank of each item's external id (ties impossible), or its index if ids do not sort."""
    try:
        order = np.argsort(inter.item_ids, kind="stable")
    except TypeError:
        return np.arange(inter.n_items, dtype=np.int64)
    rank = np.empty(inter.n_items, dtype=np.int64)
    rank[order] = np.arange(inter.n_items, dtype=np.int64)
    return rank


def _positions(inter: Interactions, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows by user then `keys` (stable); return order, position within user, user size.

    `keys` are given most significant first; equal keys keep the original row order.
    """
    n = len(inter)
    order = np.lexsort((np.arange(n), *reversed(keys), inter.user_idx))
    users = inter.user_idx[order]
    counts = np.bincount(users, minlength=inter.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(n, dtype=np.int64) - starts[users]
    return order, pos, counts[users]


def _assemble(
    inter: Interactions, order: np.ndarray, to_test: np.ndarray
) -> tuple[Interactions, Interactions]:
    """Split rows (given in `order`) into train/test; test rows whose pair is in train are dropped.

    Rows keep their original relative order within each part.
    """
    test_mask = np.zeros(len(inter), dtype=bool)
    test_mask[order[to_test]] = True
    train = inter.subset(~test_mask)
    if len(train) and test_mask.any():
        key_train = train.user_idx.astype(np.int64) * inter.n_items + train.item_idx
        test_rows = np.flatnonzero(test_mask)
        key_test = (
            inter.user_idx[test_rows].astype(np.int64) * inter.n_items + inter.item_idx[test_rows]
        )
        test_mask[test_rows[np.isin(key_test, key_train)]] = False
    return train, inter.subset(test_mask)


def _require_timestamps(inter: Interactions, what: str) -> np.ndarray:
    if inter.timestamps is None:
        raise DataError(
            f"{what} needs timestamps, but these interactions have none; "
            "load data with a timestamp column or use random_split."
        )
    return inter.timestamps


def temporal_user_split(
    inter: Interactions, test_fraction: float = 0.2
) -> tuple[Interactions, Interactions]:
    """Per user, events sorted by (timestamp, item id); the first floor((1 - f) * n_u) train.

    The remaining last ceil(f * n_u) events go to test (this is the cut that reproduces the
    published ml-small-temporal-v1 counts 80,419 / 20,417). Ties on timestamp are broken by external item id, then by original row order (stable).
    A test event whose (user, item) pair also occurs in the user's train part is dropped.
    """
    _check_fraction(test_fraction)
    ts = _require_timestamps(inter, "temporal_user_split")
    order, pos, n_u = _positions(inter, ts, _item_rank(inter)[inter.item_idx])
    return _assemble(inter, order, pos >= _n_train(n_u, test_fraction))


def leave_last_one_out(inter: Interactions) -> tuple[Interactions, Interactions]:
    """Each user's last event by (timestamp, item id) goes to test; users with one event keep it."""
    ts = _require_timestamps(inter, "leave_last_one_out")
    order, pos, n_u = _positions(inter, ts, _item_rank(inter)[inter.item_idx])
    return _assemble(inter, order, (pos == n_u - 1) & (n_u >= 2))


def random_split(
    inter: Interactions, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """Per user, ceil(test_fraction * n_u) events drawn uniformly at random (seeded) go to test.

    Same cut as `temporal_user_split`: floor((1 - f) * n_u) events per user stay in train.
    """
    _check_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    order, pos, n_u = _positions(inter, rng.permutation(len(inter)))
    return _assemble(inter, order, pos >= _n_train(n_u, test_fraction))


def validation_split(
    train: Interactions, kind: str, fraction: float = 0.2, seed: int = 0
) -> tuple[Interactions, Interactions]:
    """(fit, validation) carved from a TRAINING period, following `kind`.

    `kind` is a `ValidationKind` or a protocol name (mapped through `PROTOCOL_VALIDATION`):
    temporal takes the last `fraction` of each user's events, random a seeded random share,
    leave-last-one-out each user's last event (`fraction` unused). Models that tune themselves
    inside `fit` (re-rankers, fine-tuned encoders) call this, so what they tune for is the task
    the protocol measures.
    """
    resolved = PROTOCOL_VALIDATION.get(kind)
    if resolved is None:
        raise DataError(
            f"unknown validation kind {kind!r}; use one of {sorted(PROTOCOL_VALIDATION)}"
        )
    if resolved == "temporal":
        return temporal_user_split(train, fraction)
    if resolved == "random":
        return random_split(train, fraction, seed=seed)
    return leave_last_one_out(train)


@dataclass(frozen=True, eq=False)
class ProtocolSplit:
    """A named evaluation split: train/test, relevance matrix, scored users, cold items."""

    train: Interactions
    test: Interactions
    relevant: sp.csr_matrix
    scored_users: np.ndarray
    cold_items: np.ndarray
    name: str = PROTOCOL_NAME

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def cold_relevant_fraction(self) -> float:
        """Share of relevant test entries whose item never occurs in train."""
        rel = self.relevant.tocoo()
        return float(self.cold_items[rel.col].mean()) if rel.nnz else 0.0

    def cold_relevant(self) -> sp.csr_matrix:
        """Relevance restricted to cold items (the cold-item slice)."""
        return (self.relevant @ sp.diags(self.cold_items.astype(np.float32))).tocsr()


def protocol_split(
    train: Interactions,
    test: Interactions,
    *,
    threshold: float = RELEVANCE_THRESHOLD,
    name: str = PROTOCOL_NAME,
) -> ProtocolSplit:
    """Build a `ProtocolSplit` from any train/test pair (relevant: test rating >= threshold)."""
    if test.ratings is None:
        raise DataError("the protocol needs ratings in the test set to decide relevance")
    if train.n_items != test.n_items or train.n_users != test.n_users:
        raise DataError("train and test must share the same user and item index spaces")
    rel_rows = test.ratings >= threshold
    relevant = sp.csr_matrix(
        (
            np.ones(int(rel_rows.sum()), dtype=np.float32),
            (test.user_idx[rel_rows], test.item_idx[rel_rows]),
        ),
        shape=(test.n_users, test.n_items),
    )
    relevant.sum_duplicates()
    relevant.data[:] = 1.0
    scored = np.flatnonzero(np.diff(relevant.indptr) > 0).astype(np.int64)
    cold = np.asarray(train.matrix.sum(axis=0)).ravel() == 0
    return ProtocolSplit(
        train=train, test=test, relevant=relevant, scored_users=scored, cold_items=cold, name=name
    )


def ml_small_temporal_v1(inter: Interactions) -> ProtocolSplit:
    """Protocol `ml-small-temporal-v1` (DESIGN.md): temporal 80/20 per user, relevant >= 4.0."""
    if inter.ratings is None:
        raise DataError("ml-small-temporal-v1 needs ratings; load data with movielens_dataset()")
    train, test = temporal_user_split(inter, 0.2)
    return protocol_split(train, test, threshold=RELEVANCE_THRESHOLD, name=PROTOCOL_NAME)
