"""Batch scoring on Ray: top-k for many users of a saved bundle, in batches run as Ray tasks.

The driver loads the one model from the bundle and puts it in Ray's object store once
(`ray.put`); every task reads it from there (numpy arrays without a copy on the same node)
and runs `Recommender.recommend` on its batch. A model's scores for a user do not depend on
the other users in the batch (the `Recommender` contract), so the top-k items and their
scores are bit-identical to one `recommend` call over all users in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abrec.errors import ConfigError, DataError
from abrec.models.base import Recommender
from abrec.models.bundle import ModelBundle
from abrec.scale.session import even_ranges, ray_session


@dataclass(frozen=True)
class BatchRecommendations:
    """Top-k per requested user, rows in the order the users were given.

    Attributes:
        user_ids: the requested external user ids.
        known: whether each user is in the bundle (unknown ones get the model's cold-user
            scores: training popularity unless the model says otherwise).
        item_idx: ``[n_users, k]`` item indices of the model, best first.
        item_ids: ``[n_users, k]`` external item ids.
        scores: ``[n_users, k]`` float32 scores.
    """

    user_ids: np.ndarray
    known: np.ndarray
    item_idx: np.ndarray
    item_ids: np.ndarray
    scores: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (user, rank) with `user_id`, `rank` (1-based), `item_id`,
        `score`, `known`."""
        n, k = self.item_idx.shape
        return pd.DataFrame(
            {
                "user_id": np.repeat(self.user_ids, k),
                "rank": np.tile(np.arange(1, k + 1), n),
                "item_id": self.item_ids.ravel(),
                "score": self.scores.ravel(),
                "known": np.repeat(self.known, k),
            }
        )


def load_model(bundle_path: str | Path, model: str) -> tuple[Recommender, ModelBundle]:
    """One model of a saved bundle (ConfigError naming what exists when it does not)."""
    path = Path(bundle_path)
    if not (path / "bundle.json").is_file():
        raise ConfigError(f"{path} is not a model bundle (no bundle.json); save one with "
                          "`abrec evaluate --save-models DIR`")  # fmt: skip
    try:
        bundle = ModelBundle.load(path, names={model: model})
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    return bundle.models[model], bundle


def _user_indices(bundle: ModelBundle, users: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Dense indices of external user ids (compared as strings); -1 for unknown ones."""
    index = {str(u): i for i, u in enumerate(bundle.user_ids)}
    return np.fromiter((index.get(str(u), -1) for u in users), dtype=np.int64, count=len(users))


def _recommend_batch(
    model: Recommender, users: np.ndarray, k: int, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    return model.recommend(users, k, exclude_seen=exclude_seen)


def score_users_ray(
    bundle_path: str | Path,
    model: str,
    users: Sequence[Any] | np.ndarray,
    k: int,
    *,
    batch_size: int = 1024,
    exclude_seen: bool = True,
    address: str | None = None,
) -> BatchRecommendations:
    """Top-`k` items of `model` from the bundle at `bundle_path` for every user in `users`.

    Args:
        users: external user ids (as in the bundle's `ids.npz`, compared as strings).
        batch_size: users per Ray task.
        exclude_seen: leave out each known user's training items (as the service does).
        address: Ray address (`ray_session`); ignored when Ray is already initialised. The
            bundle is read by the driver only, so it need not exist on the workers.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    users = np.asarray(users).ravel()
    if users.size == 0:
        raise DataError("no users to score")
    rec, bundle = load_model(bundle_path, model)
    idx = _user_indices(bundle, users)
    with ray_session(address) as ray:
        remote = ray.remote(num_cpus=1)(_recommend_batch)
        ref = ray.put(rec)
        futures = [
            remote.remote(ref, idx[lo:hi], k, exclude_seen)
            for lo, hi in even_ranges(len(idx), batch_size)
        ]
        parts = ray.get(futures)
    item_idx = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False)
    return BatchRecommendations(
        user_ids=users,
        known=idx >= 0,
        item_idx=item_idx,
        item_ids=np.asarray(bundle.item_ids)[item_idx],
        scores=scores,
    )
