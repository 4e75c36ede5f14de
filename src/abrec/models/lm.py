"""Language-model recommender: cosine between item text embeddings and the user's profile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp
from pydantic import PositiveFloat

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError, DataError
from abrec.models._util import recency_weights, rows_times
from abrec.models.base import Recommender
from abrec.models.config import RecommenderConfig


class Encoder(Protocol):
    """Anything that turns texts into an (n, d) array of embeddings."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def history_profiles(
    train: Interactions, item_emb: np.ndarray, half_life: float | None
) -> np.ndarray:
    """Unit-norm (recency-weighted) mean of each user's training item embeddings.

    Users without history get a zero profile.
    """
    w = recency_weights(train.user_idx, train.timestamps, half_life)
    W = sp.csr_matrix((w, (train.user_idx, train.item_idx)), shape=(train.n_users, train.n_items))
    return l2_normalize(np.asarray(W @ item_emb.astype(np.float64)))


def default_encoder(model: str | None = None) -> Encoder:
    """`abrec.embed.TextEncoder` for `model` (None: the bundled MiniLM)."""
    try:
        from abrec.embed import TextEncoder
    except ImportError as exc:
        raise ConfigError(
            "language-model recommenders need abrec.embed.TextEncoder (install 'abrec[lm]') "
            "or an encoder object with .encode(texts)"
        ) from exc
    return TextEncoder(model) if model else TextEncoder()


def encode_catalog(items: ItemCatalog, encoder: Encoder | None, model: str | None) -> np.ndarray:
    """Unit-norm float32 embeddings of the catalogue texts, one row per item."""
    enc = encoder if encoder is not None else default_encoder(model)
    emb = np.asarray(enc.encode([str(t) for t in items.text]))
    if emb.ndim != 2 or emb.shape[0] != len(items):
        raise DataError(
            f"encoder returned shape {emb.shape}; expected ({len(items)}, dim), one row per item"
        )
    if not np.isfinite(emb).all():
        raise DataError("encoder returned non-finite embeddings; check the item texts/model")
    return l2_normalize(emb)


class EmbeddingSimilarityConfig(RecommenderConfig):
    """Language-model recommender hyper-parameters.

    Attributes:
        model: encoder model name/path for the default TextEncoder (None: bundled MiniLM).
        half_life: recency half-life in number of interactions (None: plain mean).
    """

    model: str | None = None
    half_life: PositiveFloat | None = 5.0


class EmbeddingSimilarity(Recommender):
    """score(u, j) = cos(profile_u, e_j); profile = recency-weighted mean of history embeddings.

    Item embeddings come from `encoder.encode(catalog.text)` (default: `abrec.embed.TextEncoder`
    built lazily from `config.model`). They are saved with the model, so loading needs no
    encoder. Unknown users get training popularity; `score_history` scores a user known only by
    an item history (the text-based cold-user path) with the plain mean of its items'
    embeddings, so it equals `score` of a known user with the same items only when `half_life`
    is None.

    Args:
        config: an `EmbeddingSimilarityConfig` (or its fields as keyword parameters).
        encoder: optional encoder object with `.encode(texts)`; not persisted.
    """

    name: ClassVar[str] = "lm"
    config_class: ClassVar[type[RecommenderConfig]] = EmbeddingSimilarityConfig
    config: EmbeddingSimilarityConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: EmbeddingSimilarityConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.encoder = encoder
        self.item_embeddings: np.ndarray | None = None
        self._profiles: np.ndarray | None = None

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        if self.encoder is None:
            self.encoder = default_encoder(self.config.model)
        self.item_embeddings = encode_catalog(items, self.encoder, self.config.model)
        self._profiles = history_profiles(train, self.item_embeddings, self.config.half_life)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self._profiles is not None and self.item_embeddings is not None
        return rows_times(self._profiles[users], self.item_embeddings)

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Cosine to the plain (recency-free: a history has no times) mean of the history's items."""
        assert self.item_embeddings is not None
        profiles = l2_normalize(
            np.asarray(X.astype(np.float64) @ self.item_embeddings.astype(np.float64))
        )
        return rows_times(profiles, self.item_embeddings)

    def _state(self) -> dict[str, Any]:
        return {"item_embeddings": self.item_embeddings, "profiles": self._profiles}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.item_embeddings = state["item_embeddings"]
        self._profiles = state["profiles"]
