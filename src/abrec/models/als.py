"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) through the `implicit` library, on CPU."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.models._util import check_positive
from abrec.models.base import Recommender


class ALS(Recommender):
    """Matrix factorisation with confidence 1 + alpha * x; single-threaded for determinism."""

    name: ClassVar[str] = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(factors) != factors or factors < 1:
            raise ConfigError(f"factors must be a positive integer, got {factors!r}")
        if int(iterations) != iterations or iterations < 1:
            raise ConfigError(f"iterations must be a positive integer, got {iterations!r}")
        check_positive("regularization", regularization, allow_zero=True)
        check_positive("alpha", alpha)
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.iterations = int(iterations)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self._U: np.ndarray | None = None
        self._V: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "iterations": self.iterations,
            "alpha": self.alpha,
            "seed": self.seed,
        }

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("ALS needs the 'implicit' package: pip install 'abrec[cf]'") from exc
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.seed,
                num_threads=1,
                calculate_training_loss=False,
            )
            model.fit(self._require_train(), show_progress=False)
        self._U = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self._V = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self._U is not None and self._V is not None
        return self._U[users] @ self._V.T

    def _state(self) -> dict[str, Any]:
        return {"U": self._U, "V": self._V}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._U = state["U"]
        self._V = state["V"]
