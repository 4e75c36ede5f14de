"""Most-popular baseline: every user gets the training interaction counts."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from abrec.data.types import Interactions, ItemCatalog
from abrec.models.base import Recommender


class Popularity(Recommender):
    """Scores each item by its number of training users (normalised to [0, 1])."""

    name: ClassVar[str] = "popularity"

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        return None

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.cold_user_scores(), (len(users), self.n_items)).copy()

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Everyone gets popularity, whatever their history."""
        return self._score_known(np.zeros(X.shape[0], dtype=np.int64))
