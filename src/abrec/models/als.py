"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) through the `implicit` library, on CPU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.models._util import rows_times
from abrec.models.base import Recommender
from abrec.models.config import RecommenderConfig


class ALSConfig(RecommenderConfig):
    """ALS hyper-parameters (see `implicit.cpu.als.AlternatingLeastSquares`)."""

    factors: PositiveInt = 64
    regularization: NonNegativeFloat = 0.05
    iterations: PositiveInt = 15
    alpha: PositiveFloat = 1.0
    seed: NonNegativeInt = 0


class ALS(Recommender):
    """Matrix factorisation with confidence 1 + alpha * x; single-threaded for determinism.

    `score_history` folds a new user in with one exact least-squares step (`fold_in`).
    """

    name: ClassVar[str] = "als"
    config_class: ClassVar[type[RecommenderConfig]] = ALSConfig
    config: ALSConfig

    def __init__(
        self, config: ALSConfig | Mapping[str, Any] | None = None, /, **params: Any
    ) -> None:
        super().__init__(config, **params)
        self._U: np.ndarray | None = None
        self._V: np.ndarray | None = None

    def _implicit_model(self) -> Any:
        """A CPU `implicit` ALS with this model's settings (single thread)."""
        cfg = self.config
        return _als_class()(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
            iterations=cfg.iterations,
            random_state=cfg.seed,
            num_threads=1,
            calculate_training_loss=False,
        )

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        from threadpoolctl import threadpool_limits  # installed with implicit

        # one BLAS thread (implicit warns otherwise and runs slower with a threadpool);
        # import implicit first so the limit also covers the BLAS it loads
        _als_class()
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._implicit_model()
            model.fit(self._require_train(), show_progress=False)
        self._U = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self._V = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self._U is not None and self._V is not None
        return rows_times(self._U[users], self._V)

    def fold_in(self, X: sp.csr_matrix) -> np.ndarray:
        """User factors for binary history rows X: one exact ALS user step against fixed items.

        This is `implicit`'s `recalculate_user` (the fold-in behind `recalculate_user=True`):
        x_u = (V'V + reg I + V' (C_u - I) V)^-1 V' C_u p_u with confidence C_u = alpha * X_u.
        """
        assert self._V is not None
        from threadpoolctl import threadpool_limits

        _als_class()
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._implicit_model()
            model.item_factors = self._V
            U = model.recalculate_user(np.arange(X.shape[0]), sp.csr_matrix(X, dtype=np.float32))
        return np.asarray(U, dtype=np.float32).reshape(X.shape[0], self.config.factors)

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Fold-in scores: not equal to `score` of a known user with the same items, whose
        factors come from the (conjugate-gradient) training iterations, not one exact step."""
        assert self._V is not None
        return rows_times(self.fold_in(X), self._V)

    def _state(self) -> dict[str, Any]:
        return {"U": self._U, "V": self._V}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._U = state["U"]
        self._V = state["V"]


def _als_class() -> Any:
    """implicit's CPU ALS class, with a clear error when the package is missing."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("ALS needs the 'implicit' package: pip install 'abrec[cf]'") from exc
    return AlternatingLeastSquares
