"""Two-tower language-model recommender: the user tower reads the titles of recent likes.

score(u, j) = cos(enc(anchor_u), enc(text_j)), where anchor_u is the titles of the user's last
`history_len` liked items (oldest first, joined with "; ") and text_j the item's catalogue text:
exactly the pair the contrastive fine-tuning (`abrec.train`, MultipleNegativesRankingLoss with
in-batch negatives) learns to match. With `finetune` set, `fit` first fine-tunes the encoder on
the training interactions it is given (validation carved from them by `validation`, cached by
content in `abrec.train.tuned`), so each protocol's model is tuned on that protocol's training
period only. Without it, `model` (a folder, e.g. one written by `abrec train`) or the bundled
MiniLM is used as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import PositiveInt

from abrec.data.splits import RELEVANCE_THRESHOLD
from abrec.data.types import Interactions, ItemCatalog
from abrec.models._util import rows_times
from abrec.models.base import Recommender
from abrec.models.config import RecommenderConfig
from abrec.models.lm import Encoder, default_encoder, l2_normalize
from abrec.models.tuning import TunedEncoderConfig, finetune_config, tuned_text_encoder

if TYPE_CHECKING:
    from abrec.train.config import TrainConfig


class TwoTowerConfig(TunedEncoderConfig):
    """Two-tower hyper-parameters.

    Attributes:
        model: encoder folder or name (None: the bundled MiniLM); the base model when
            `finetune` is set.
        finetune: `abrec.train.TrainConfig` fields; when set, `fit` fine-tunes `model` on the
            training interactions first (its `history_len`, `seed` and validation split are this
            config's; `output_dir` is the cache's).
        history_len: liked items whose titles make the user's anchor text.
        relevance_threshold: a rating >= this is a like (every event when there are no ratings).
        seed: seeds the fine-tuning and its random validation split.
        cache_dir: where fine-tuned encoders are kept (None: `$ABREC_CACHE/finetune`).
    """

    model: str | None = None
    history_len: PositiveInt = 5
    relevance_threshold: float = RELEVANCE_THRESHOLD

    def train_config(self) -> TrainConfig | None:
        """The validated fine-tuning config (None without `finetune`); ConfigError names a bad key."""
        return finetune_config(self, "two_tower")


def anchor_texts(
    train: Interactions, titles: list[str], history_len: int, threshold: float
) -> list[str]:
    """Each user's anchor: titles of the last `history_len` liked items (all items if none liked)."""
    from abrec.train.data import anchor_text, liked_sequences

    liked = liked_sequences(train, threshold)
    anyone = liked_sequences(train, -np.inf)
    return [
        anchor_text(titles, (seq if len(seq) else every)[-history_len:])
        for seq, every in zip(liked, anyone, strict=True)
    ]


class TwoTower(Recommender):
    """Cosine of the user's anchor-text vector and the items' text vectors (see module doc).

    Item, title and user vectors are computed in `fit` and saved with the model, so a loaded
    model scores without the encoder. `score_history` (users known only by items, in no order)
    uses the normalised mean of the history items' title vectors as the user vector, an
    approximation of encoding their joined titles.

    Args:
        config: a `TwoTowerConfig` (or its fields as keyword parameters).
        encoder: optional encoder object with `.encode(texts)`, used instead of building one
            from `model` when `finetune` is not set (as the other LM models do); not persisted.
    """

    name: ClassVar[str] = "two_tower"
    config_class: ClassVar[type[RecommenderConfig]] = TwoTowerConfig
    config: TwoTowerConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: TwoTowerConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.config.train_config()  # a bad `finetune` key fails here, before any training
        self.encoder = encoder
        self.item_embeddings: np.ndarray | None = None
        self.title_embeddings: np.ndarray | None = None
        self.user_embeddings: np.ndarray | None = None
        self.training_report: dict[str, Any] | None = None

    def tuned_encoder(self, train: Interactions, items: ItemCatalog) -> Encoder:
        """The encoder to read texts with: fine-tuned on `train` when `finetune` is set."""
        cfg = self.config
        tuned, self.training_report = tuned_text_encoder(cfg, train, items, self.name)
        if tuned is not None:
            return tuned
        return self.encoder if self.encoder is not None else default_encoder(cfg.model)

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        from abrec.train.data import item_titles

        encoder = self.tuned_encoder(train, items)
        titles = item_titles(items)
        self.item_embeddings = l2_normalize(
            np.asarray(encoder.encode([str(t) for t in items.text]))
        )
        self.title_embeddings = l2_normalize(np.asarray(encoder.encode(titles)))
        anchors = anchor_texts(
            train, titles, self.config.history_len, self.config.relevance_threshold
        )
        has = np.flatnonzero([bool(a) for a in anchors])
        users = np.zeros((train.n_users, self.item_embeddings.shape[1]), dtype=np.float32)
        if len(has):
            users[has] = l2_normalize(np.asarray(encoder.encode([anchors[u] for u in has])))
        self.user_embeddings = users

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self.user_embeddings is not None and self.item_embeddings is not None
        return rows_times(self.user_embeddings[users], self.item_embeddings)

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Cosine to the mean of the history items' title vectors (order is unknown)."""
        assert self.title_embeddings is not None and self.item_embeddings is not None
        profiles = l2_normalize(
            np.asarray(X.astype(np.float64) @ self.title_embeddings.astype(np.float64))
        )
        return rows_times(profiles, self.item_embeddings)

    def _state(self) -> dict[str, Any]:
        return {
            "item_embeddings": self.item_embeddings,
            "title_embeddings": self.title_embeddings,
            "user_embeddings": self.user_embeddings,
            "training_report": json.dumps(self.training_report, default=str),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.item_embeddings = state["item_embeddings"]
        self.title_embeddings = state["title_embeddings"]
        self.user_embeddings = state["user_embeddings"]
        self.training_report = json.loads(state["training_report"])
