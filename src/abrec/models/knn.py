"""Item-KNN: cosine item-item collaborative filtering with shrinkage and top-k pruning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, PositiveInt

from abrec.data.types import Interactions, ItemCatalog
from abrec.models._util import active_items, scatter_columns, take_columns
from abrec.models.base import Recommender
from abrec.models.config import RecommenderConfig


def cosine_topk(X: sp.csr_matrix, k: int, shrinkage: float, block: int = 1024) -> sp.csr_matrix:
    """Sparse item-item cosine similarity keeping the k most similar source items per target.

    s_ij = x_i . x_j / (|x_i| |x_j| + shrinkage), diagonal excluded; column j holds item j's
    neighbours, so `X @ S` scores every target item.
    """
    n = X.shape[1]
    Xc = X.tocsc().astype(np.float32)
    norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(axis=0)).ravel())
    k = min(k, max(n - 1, 0))
    rows, cols, vals = [], [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        num = (Xc.T @ Xc[:, start:stop]).toarray()
        sim = num / (np.outer(norms, norms[start:stop]) + shrinkage + 1e-12)
        sim[np.arange(start, stop), np.arange(stop - start)] = 0.0
        if k == 0:
            continue
        idx = (
            np.argpartition(-sim, k - 1, axis=0)[:k]
            if k < n
            else np.tile(np.arange(n)[:, None], stop - start)
        )
        v = np.take_along_axis(sim, idx, axis=0)
        keep = v > 0
        rows.append(idx[keep])
        cols.append(np.broadcast_to(np.arange(start, stop), idx.shape)[keep])
        vals.append(v[keep])
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, n),
    )


class ItemKNNConfig(RecommenderConfig):
    """Item-KNN hyper-parameters: neighbours kept per item and cosine shrinkage."""

    k: PositiveInt = 100
    shrinkage: NonNegativeFloat = 0.0


class ItemKNN(Recommender):
    """score(u, j) = sum over the user's items i of sim(i, j), sim from `cosine_topk`."""

    name: ClassVar[str] = "itemknn"
    config_class: ClassVar[type[RecommenderConfig]] = ItemKNNConfig
    config: ItemKNNConfig

    def __init__(
        self, config: ItemKNNConfig | Mapping[str, Any] | None = None, /, **params: Any
    ) -> None:
        super().__init__(config, **params)
        self._items: np.ndarray | None = None
        self._S: sp.csr_matrix | None = None

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        X = self._require_train()
        self._items = active_items(X)
        self._S = cosine_topk(X[:, self._items], self.config.k, self.config.shrinkage)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        return self._score_history(self._require_train()[users])

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        assert self._S is not None and self._items is not None
        return scatter_columns(
            (take_columns(X, self._items) @ self._S).toarray(), self._items, self.n_items
        )

    def _state(self) -> dict[str, Any]:
        return {"items": self._items, "S": self._S}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._items = state["items"]
        self._S = state["S"]
