"""Cold items in a factor model: item factors predicted from the item's text vector.

`RidgeMapping` is a closed-form ridge regression from text vectors to collaborative item
factors; `ALSText` is ALS whose items without training interactions get factors predicted
by a `RidgeMapping` fitted on the warm items' (text vector, ALS factor) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import PositiveFloat

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.models._util import active_items, rows_times
from abrec.models.als import ALS, ALSConfig
from abrec.models.config import RecommenderConfig
from abrec.models.lm import Encoder, encode_catalog


@dataclass(frozen=True)
class RidgeMapping:
    """Linear map V ~ E W[:-1] + W[-1] from (n, d) inputs to (n, k) targets.

    Attributes:
        W: (d + 1, k) float64; the last row is the intercept.
    """

    W: np.ndarray

    @classmethod
    def fit(cls, E: np.ndarray, V: np.ndarray, alpha: float) -> RidgeMapping:
        """Ridge regression with an unpenalised intercept, in closed form.

        Minimises ||V - E C - 1 b^T||^2 + alpha ||C||^2: centring E and V removes b, so
        C = (Ec^T Ec + alpha I)^-1 Ec^T Vc and b = mean(V) - mean(E) C.

        Args:
            E: (n, d) inputs (e.g. text vectors of warm items).
            V: (n, k) targets (e.g. their collaborative item factors).
            alpha: L2 penalty on C (> 0).
        """
        if not alpha > 0:
            raise ConfigError(f"ridge alpha must be > 0, got {alpha!r}")
        E = np.asarray(E, dtype=np.float64)
        V = np.asarray(V, dtype=np.float64)
        if E.ndim != 2 or V.ndim != 2 or E.shape[0] != V.shape[0] or E.shape[0] == 0:
            raise ValueError(f"need (n, d) and (n, k) with n > 0 rows, got {E.shape}, {V.shape}")
        e_mean, v_mean = E.mean(axis=0), V.mean(axis=0)
        Ec, Vc = E - e_mean, V - v_mean
        A = Ec.T @ Ec
        A[np.diag_indices_from(A)] += alpha
        C = np.linalg.solve(A, Ec.T @ Vc)
        return cls(np.vstack([C, v_mean - e_mean @ C]))

    def predict(self, E: np.ndarray) -> np.ndarray:
        """(n, k) float64 predictions for (n, d) inputs."""
        return np.asarray(E, dtype=np.float64) @ self.W[:-1] + self.W[-1]


class ALSTextConfig(ALSConfig):
    """ALS hyper-parameters plus the cold-item mapping.

    Attributes:
        ridge_alpha: L2 penalty of the text -> item factor ridge regression.
        model: encoder model for the default `abrec.embed.TextEncoder` (None: bundled MiniLM).
    """

    ridge_alpha: PositiveFloat = 1.0
    model: str | None = None


class ALSText(ALS):
    """ALS whose cold items get item factors predicted from their text vectors.

    Warm items (at least one training interaction) keep their ALS factors, so their scores
    equal plain ALS's exactly. Each cold item's factors are `RidgeMapping` predictions from
    its unit-norm text vector, the mapping fitted on the warm items' (text vector, ALS item
    factor) pairs; its score is user factors . predicted factors. The catalogue is encoded
    only when there are cold items. `score_history` folds a user in against the trained ALS
    item factors (as ALS does) and scores with the mapped ones.

    Args:
        config: an `ALSTextConfig` (or its fields as keyword parameters).
        encoder: optional encoder object with `.encode(texts)`; not persisted.
    """

    name: ClassVar[str] = "als_text"
    config_class: ClassVar[type[RecommenderConfig]] = ALSTextConfig
    config: ALSTextConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: ALSTextConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.encoder = encoder
        self._cold: np.ndarray | None = None
        self._V_cold: np.ndarray | None = None
        self._V_scored: np.ndarray | None = None

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        super()._fit(train, items)
        assert self._V is not None
        warm = active_items(self._require_train())
        self._cold = np.setdiff1d(np.arange(train.n_items), warm)
        self._V_cold = np.zeros((len(self._cold), self._V.shape[1]), dtype=np.float32)
        if len(self._cold):
            E = encode_catalog(items, self.encoder, self.config.model)
            mapping = RidgeMapping.fit(E[warm], self._V[warm], self.config.ridge_alpha)
            self._V_cold = mapping.predict(E[self._cold]).astype(np.float32)
        self._V_scored = self._scoring_factors()

    def _scoring_factors(self) -> np.ndarray:
        """ALS item factors with the cold items' rows replaced by their predictions."""
        assert self._V is not None and self._cold is not None and self._V_cold is not None
        V = self._V.copy()
        V[self._cold] = self._V_cold
        return V

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self._U is not None and self._V_scored is not None
        return rows_times(self._U[users], self._V_scored)

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Fold-in user factors (against the trained ALS item factors) times the mapped ones."""
        assert self._V_scored is not None
        return rows_times(self.fold_in(X), self._V_scored)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "cold_items": self._cold, "V_cold": self._V_cold}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._cold = state["cold_items"]
        self._V_cold = state["V_cold"]
        self._V_scored = self._scoring_factors()
