"""Most-popular baseline: every user gets the training interaction counts."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from abrec.data.types import Interactions, ItemCatalog
from abrec.models.base import Recommender


class Popularity(Recommender):
    """Scores each item by its number of training users (normalised to [0, 1])."""

    name: ClassVar[str] = "popularity"

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        return None

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.cold_user_scores(), (len(users), self.n_items)).copy()
