"""EASE (Steck 2019) and its text-regularised variant with language-model item embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from abrec.data.types import Interactions, ItemCatalog
from abrec.models._util import active_items, scatter_columns, take_columns
from abrec.models.base import Recommender
from abrec.models.compact import ItemWeights, StorageDtype
from abrec.models.config import RecommenderConfig
from abrec.models.lm import Encoder, encode_catalog


def _b_from_p(P: np.ndarray) -> np.ndarray:
    B = P / (-np.diag(P))
    B[np.diag_indices_from(B)] = 0.0
    return B.astype(np.float32)


def ease_from_gram(G: np.ndarray, lambda_: float) -> np.ndarray:
    """EASE closed form: B = I - P diagMat(1/diag(P)), P = (G + lambda I)^-1, diag(B) = 0."""
    G = np.array(G, dtype=np.float64, copy=True)
    G[np.diag_indices_from(G)] += lambda_
    return _b_from_p(np.linalg.inv(G))


def regularised_inverse(A: np.ndarray | sp.spmatrix, lambda_: float) -> np.ndarray:
    """P = (A^T A + lambda I)^-1 in float64 for A (rows x items).

    With fewer rows than items (fewer users than items) P comes from the Woodbury identity,
    P = (I - A^T (lambda I + A A^T)^-1 A) / lambda: O(items^2 * rows) instead of O(items^3).
    """
    m, n = A.shape
    if m >= n:
        if sp.issparse(A):
            G = sp.csr_matrix(A.T @ A).toarray().astype(np.float64)
        else:
            Ad = np.asarray(A, dtype=np.float64)
            G = Ad.T @ Ad
        G[np.diag_indices_from(G)] += lambda_
        return np.linalg.inv(G)
    Ad = np.asarray(A if isinstance(A, np.ndarray) else A.toarray(), dtype=np.float64)
    K = Ad @ Ad.T
    K[np.diag_indices_from(K)] += lambda_
    P = -(Ad.T @ np.linalg.solve(K, Ad))
    P[np.diag_indices_from(P)] += 1.0
    P /= lambda_
    return P


def ease_weights(A: np.ndarray | sp.spmatrix, lambda_: float) -> np.ndarray:
    """EASE closed form for the Gram matrix G = A^T A of A (rows x items).

    P = (G + lambda I)^-1 comes from `regularised_inverse` (Woodbury when rows < items).
    """
    return _b_from_p(regularised_inverse(A, lambda_))


def centred_embeddings(emb: np.ndarray) -> np.ndarray:
    """float64 copy of `emb` centred over its rows (items) and re-normalised to unit rows.

    Centring removes the direction every item text shares, so cosine similarities spread
    around 0 instead of all being large; zero rows stay zero.
    """
    out = np.array(emb, dtype=np.float64, copy=True)
    out -= out.mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out /= np.where(norms > 0, norms, 1.0)
    return out


class EASEConfig(RecommenderConfig):
    """EASE hyper-parameters.

    Attributes:
        lambda_: L2 regularisation of the item-item weights B.
        storage_dtype: how B is stored and saved ("float16" halves it; scores are always
            computed in float32, see `abrec.models.compact` for the tolerance).
        prune_top_k: keep only the k entries of largest |value| in each row of B (sparse CSR),
            applied when the model is fitted; None keeps B dense.
    """

    lambda_: PositiveFloat = 500.0
    storage_dtype: StorageDtype = "float32"
    prune_top_k: PositiveInt | None = None


class EASE(Recommender):
    """B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1, over items seen in training.

    Items never seen in training get score 0 (their B rows/columns are exactly 0).
    B is kept as configured by `storage_dtype` and `prune_top_k` (`abrec.models.compact`);
    scores are float32 `history @ B` of the stored (rounded / pruned) weights.
    """

    name: ClassVar[str] = "ease"
    config_class: ClassVar[type[RecommenderConfig]] = EASEConfig
    config: EASEConfig

    def __init__(
        self, config: EASEConfig | Mapping[str, Any] | None = None, /, **params: Any
    ) -> None:
        super().__init__(config, **params)
        self._items: np.ndarray | None = None
        self.weights: ItemWeights | None = None
        self._col_cache: tuple[np.ndarray, np.ndarray] | None = None  # (_items, B column of item)

    @property
    def _B(self) -> np.ndarray | None:
        """B as a dense float32 array (the stored weights, widened); None before fit."""
        return None if self.weights is None else self.weights.to_dense()

    @_B.setter
    def _B(self, B: np.ndarray) -> None:
        """Store freshly fitted weights, compacted as the config says."""
        cfg = self.config
        self.weights = ItemWeights.compact(B, cfg.storage_dtype, cfg.prune_top_k)

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        self._items = active_items(self._require_train())
        self._B = ease_weights(self._require_train()[:, self._items], self.config.lambda_)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        return self._score_history(self._require_train()[users])

    def score_user(self, user: int) -> np.ndarray:
        """One known user's row straight from the training matrix's index arrays and
        `ItemWeights.row` (the kernel `score` runs per row, so the numbers are the same)."""
        train = self._require_train()
        if not 0 <= user < train.shape[0]:
            return super().score_user(user)
        assert self.weights is not None and self._items is not None
        if self._col_cache is None or self._col_cache[0] is not self._items:
            col = np.full(train.shape[1], -1, dtype=np.int64)
            col[self._items] = np.arange(len(self._items))
            self._col_cache = (self._items, col)
        lo, hi = train.indptr[user], train.indptr[user + 1]
        cols = self._col_cache[1][train.indices[lo:hi]]
        kept = cols >= 0
        out = np.zeros(train.shape[1], dtype=np.float32)
        out[self._items] = self.weights.row(cols[kept], train.data[lo:hi][kept])
        return out

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Sparse history rows times dense B (scipy): each row is summed on its own."""
        assert self.weights is not None and self._items is not None
        return scatter_columns(
            self.weights.matmul(take_columns(X, self._items)), self._items, self.n_items
        )

    def _state(self) -> dict[str, Any]:
        self._require_train()
        assert self.weights is not None
        return {"items": self._items, **self.weights.to_state()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._items = state["items"]
        self.weights = ItemWeights.from_state(state)


class TextEASEConfig(EASEConfig):
    """TextEASE hyper-parameters.

    Attributes:
        lambda_: L2 regularisation, as in EASE.
        beta: weight of the text prior (0 gives EASE over all items).
        model: encoder model for the default `abrec.embed.TextEncoder` (None: bundled MiniLM).
        storage_dtype, prune_top_k: compact storage of B, as in EASE.
    """

    beta: NonNegativeFloat = 20.0
    model: str | None = None


class TextEASE(EASE):
    """EASE whose Gram matrix gets a language-model prior: X^T X + beta * E~ E~^T.

    E~ are the item text embeddings, centred over the catalogue and re-normalised, so the
    prior is exactly EASE on X with extra pseudo-user rows sqrt(beta) E~^T (collective EASE
    with side information, Jeunen et al. 2020). Every catalogue item, including items never
    seen in training, gets weights, so cold items are scored through their text.

    Args:
        config: a `TextEASEConfig` (or its fields as keyword parameters).
        encoder: optional encoder object with `.encode(texts)`; not persisted.
    """

    name: ClassVar[str] = "text_ease"
    config_class: ClassVar[type[RecommenderConfig]] = TextEASEConfig
    config: TextEASEConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: TextEASEConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.encoder = encoder

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        cfg = self.config
        emb = centred_embeddings(encode_catalog(items, self.encoder, cfg.model))
        self._items = np.arange(train.n_items)
        X = self._require_train()
        if X.shape[0] + emb.shape[1] < X.shape[1]:
            # X^T X + beta E~ E~^T is the Gram matrix of X stacked on sqrt(beta) E~^T.
            A = np.vstack([X.toarray(), np.sqrt(cfg.beta) * emb.T])
            self._B = ease_weights(A, cfg.lambda_)
        else:
            G = (X.T @ X).toarray() + cfg.beta * (emb @ emb.T)
            self._B = ease_from_gram(G, cfg.lambda_)
