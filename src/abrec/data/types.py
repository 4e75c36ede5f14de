"""Core data contracts: `Interactions` (user x item events) and `ItemCatalog` (item texts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from abrec.errors import DataError


@dataclass(frozen=True, eq=False)
class Interactions:
    """User x item interactions in long form over fixed user and item index spaces.

    Rows are events (`user_idx[i]`, `item_idx[i]`), with optional `ratings` and
    `timestamps`. `user_ids[u]` / `item_ids[j]` map dense indices back to external ids.
    Splits keep the same index spaces, so a train and a test set line up column by
    column with the `ItemCatalog`, including items that never occur in train.
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        if len(self.item_idx) != n:
            raise DataError("user_idx and item_idx must have the same length")
        for name in ("ratings", "timestamps"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise DataError(f"{name} must have one value per interaction ({n}), got {len(arr)}")
        if n:
            if self.user_idx.min() < 0 or self.user_idx.max() >= len(self.user_ids):
                raise DataError("user_idx out of range of user_ids")
            if self.item_idx.min() < 0 or self.item_idx.max() >= len(self.item_ids):
                raise DataError("item_idx out of range of item_ids")

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user_idx)

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """Binary implicit-feedback matrix (n_users x n_items, float32, 1.0 where any event)."""
        m = sp.csr_matrix(
            (np.ones(len(self), dtype=np.float32), (self.user_idx, self.item_idx)),
            shape=(self.n_users, self.n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    @cached_property
    def rating_matrix(self) -> sp.csr_matrix:
        """Explicit ratings matrix (last rating wins on duplicates); ones if no ratings."""
        if self.ratings is None:
            return self.matrix
        df = pd.DataFrame({"u": self.user_idx, "i": self.item_idx, "r": self.ratings})
        df = df.drop_duplicates(["u", "i"], keep="last")
        return sp.csr_matrix(
            (df["r"].to_numpy(np.float32), (df["u"].to_numpy(), df["i"].to_numpy())),
            shape=(self.n_users, self.n_items),
        )

    def subset(self, mask: np.ndarray) -> Interactions:
        """Rows selected by a boolean mask or index array, in the same index spaces."""
        return Interactions(
            user_idx=self.user_idx[mask],
            item_idx=self.item_idx[mask],
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            ratings=None if self.ratings is None else self.ratings[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
        )

    def to_frame(self) -> pd.DataFrame:
        """Long-form frame with external ids (`user_id`, `item_id`, `rating`, `timestamp`)."""
        df = pd.DataFrame(
            {"user_id": self.user_ids[self.user_idx], "item_id": self.item_ids[self.item_idx]}
        )
        if self.ratings is not None:
            df["rating"] = self.ratings
        if self.timestamps is not None:
            df["timestamp"] = self.timestamps
        return df

    def user_index(self, external_ids: np.ndarray | list[object]) -> np.ndarray:
        """Dense indices for external user ids; -1 for unknown users."""
        lookup = self._cache.get("user_lookup")
        if lookup is None:
            lookup = pd.Index(self.user_ids)
            self._cache["user_lookup"] = lookup
        assert isinstance(lookup, pd.Index)
        return np.asarray(lookup.get_indexer(pd.Index(np.asarray(external_ids))), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ItemCatalog:
    """Items aligned with Interactions columns, with the text a language model reads."""

    item_ids: np.ndarray
    text: np.ndarray
    features: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if len(self.text) != len(self.item_ids):
            raise DataError(
                f"ItemCatalog: {len(self.item_ids)} item ids but {len(self.text)} texts"
            )
        if self.features is not None and len(self.features) != len(self.item_ids):
            raise DataError("ItemCatalog: features must have one row per item")

    def __len__(self) -> int:
        return len(self.item_ids)
