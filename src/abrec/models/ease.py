"""EASE (Steck 2019): closed-form item-item linear autoencoder with zero diagonal."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from abrec.data.types import Interactions, ItemCatalog
from abrec.models._util import active_items, check_positive, scatter_columns
from abrec.models.base import Recommender


class EASE(Recommender):
    """B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1, over items seen in training.

    Items never seen in training get score 0 (their B rows/columns are exactly 0).
    """

    name: ClassVar[str] = "ease"

    def __init__(self, lambda_: float = 500.0) -> None:
        super().__init__()
        check_positive("lambda_", lambda_)
        self.lambda_ = float(lambda_)
        self._items: np.ndarray | None = None
        self._B: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {"lambda_": self.lambda_}

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        X = self._require_train()
        act = active_items(X)
        Xa = X[:, act]
        G = (Xa.T @ Xa).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.lambda_
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self._items = act
        self._B = B.astype(np.float32)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self._B is not None and self._items is not None
        Xu = self._require_train()[users][:, self._items]
        return scatter_columns(np.asarray(Xu @ self._B), self._items, self.n_items)

    def _state(self) -> dict[str, Any]:
        return {"items": self._items, "B": self._B}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._items = state["items"]
        self._B = state["B"]
