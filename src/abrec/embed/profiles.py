"""User representations: (recency-)weighted means of the embeddings of items in their history."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from abrec.data.types import Interactions
from abrec.errors import DataError

SECONDS_PER_DAY = 86_400.0


def interaction_weights(
    train: Interactions,
    method: Literal["mean", "recency"] = "mean",
    half_life_days: float = 180.0,
    weights_from_ratings: bool = False,
) -> np.ndarray:
    """Per-interaction weight: 1, or 0.5 ** (age_days / half_life) vs the user's last event.

    With `weights_from_ratings` the weight is multiplied by the rating.
    """
    w = np.ones(len(train), dtype=np.float64)
    if method == "recency":
        if train.timestamps is None:
            raise DataError(
                "recency profiles need timestamps; use method='mean' or load timestamps"
            )
        if not half_life_days > 0:
            raise DataError(f"half_life_days must be > 0, got {half_life_days}")
        ts = train.timestamps.astype(np.float64)
        last = np.full(train.n_users, -np.inf)
        np.maximum.at(last, train.user_idx, ts)
        age_days = (last[train.user_idx] - ts) / SECONDS_PER_DAY
        w = np.power(0.5, age_days / half_life_days)
    elif method != "mean":
        raise DataError(f"unknown profile method {method!r}; use 'mean' or 'recency'")
    if weights_from_ratings:
        if train.ratings is None:
            raise DataError("weights_from_ratings=True needs ratings; these interactions have none")
        if (train.ratings < 0).any():
            raise DataError("weights_from_ratings needs non-negative ratings")
        w = w * train.ratings.astype(np.float64)
    return w


def user_profiles(
    train: Interactions,
    item_emb: np.ndarray,
    method: Literal["mean", "recency"] = "mean",
    half_life_days: float = 180.0,
    weights_from_ratings: bool = False,
) -> np.ndarray:
    """n_users x d float32 profiles, L2-normalised; users without history get zero rows.

    Repeated (user, item) events add their weights.
    """
    item_emb = np.asarray(item_emb)
    if item_emb.ndim != 2 or item_emb.shape[0] != train.n_items:
        raise DataError(
            f"item_emb must be (n_items={train.n_items}, d); got shape {item_emb.shape}. "
            "Encode the ItemCatalog aligned with these interactions."
        )
    w = interaction_weights(train, method, half_life_days, weights_from_ratings)
    weights = sp.csr_matrix(
        (w, (train.user_idx, train.item_idx)), shape=(train.n_users, train.n_items)
    )
    prof = np.asarray(weights @ item_emb.astype(np.float64))
    norms = np.linalg.norm(prof, axis=1, keepdims=True)
    prof = np.divide(prof, norms, out=np.zeros_like(prof), where=norms > 1e-12)
    return prof.astype(np.float32)
