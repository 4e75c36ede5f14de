"""Recommendation engine over a loaded `ModelBundle`: external ids in, ranked item ids out.

Models are loaded once; a request only maps ids to indices, scores one row and takes a
top-k. Nothing here trains or re-encodes anything. An unknown unit that sends its item
history (`context.history`) is scored from it by models with `supports_history`
(`Recommender.score_history`); otherwise it gets the model's cold-user (popularity) scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abrec.errors import ConfigError
from abrec.models.base import Recommender, top_k_row
from abrec.models.bundle import ModelBundle


@dataclass(frozen=True)
class Ranked:
    """One ranked list: external item ids and their scores, best first."""

    model: str
    item_ids: list[str]
    scores: list[float]
    known_user: bool
    used_history: bool


class Engine:
    """Maps external unit/item ids to bundle indices and ranks items with a named model.

    ``version`` names the model registry version the bundle came from (None for a bundle
    folder served directly); exposures served by this engine carry it.
    """

    def __init__(
        self, bundle: ModelBundle, fallback_model: str | None = None, version: str | None = None
    ) -> None:
        self.version = version
        if not bundle.models:
            raise ConfigError(
                "the model bundle holds no models; save at least one with ModelBundle"
            )
        self.bundle = bundle
        self.item_ids = np.asarray([str(i) for i in bundle.item_ids], dtype=object)
        self._user_index = {str(u): i for i, u in enumerate(bundle.user_ids)}
        self._item_index = {s: j for j, s in enumerate(self.item_ids)}
        if fallback_model is not None and fallback_model not in bundle.models:
            raise ConfigError(
                f"fallback_model {fallback_model!r} is not in the bundle (it has "
                f"{sorted(bundle.models)}); set fallback_model to one of those"
            )
        if fallback_model is None:
            fallback_model = (
                "popularity" if "popularity" in bundle.models else sorted(bundle.models)[0]
            )
        self.fallback_model = fallback_model

    @classmethod
    def load(
        cls, path: str | Path, fallback_model: str | None = None, version: str | None = None
    ) -> Engine:
        """Load the bundle saved at `path` once."""
        path = Path(path)
        if not (path / "bundle.json").is_file():
            raise ConfigError(
                f"{path} is not a model bundle (no bundle.json); build one with ModelBundle.save"
            )
        return cls(ModelBundle.load(path), fallback_model, version)

    @property
    def model_names(self) -> list[str]:
        return sorted(self.bundle.models)

    def has_model(self, name: str) -> bool:
        return name in self.bundle.models

    def user_index(self, unit_id: str) -> int:
        """Dense user index of an external unit id, -1 when unknown."""
        return self._user_index.get(unit_id, -1)

    def item_indices(self, item_ids: Sequence[str]) -> np.ndarray:
        """Dense indices of the known external item ids (unknown ones are dropped)."""
        idx = [self._item_index.get(str(i), -1) for i in item_ids]
        return np.unique(np.asarray([i for i in idx if i >= 0], dtype=np.int64))

    def recommend(
        self, model_name: str, unit_id: str, k: int, history: Sequence[str] = ()
    ) -> Ranked:
        """Top-k items for one unit; unknown units get history-based or cold (popularity) scores."""
        model: Recommender = self.bundle.models[model_name]
        user = self.user_index(unit_id)
        hist = self.item_indices(history) if history else None
        used_history = False
        train = model.train_matrix
        if 0 <= user < train.shape[0]:
            # Known user: exclude the training items (as `Recommender.recommend` does) and
            # what the client says was seen; one row, masked in place (score_user allocates it).
            row = model.score_user(user)
            row[train.indices[train.indptr[user] : train.indptr[user + 1]]] = -np.inf
        elif hist is not None and len(hist) and model.supports_history:
            row = model.score_history([hist])[0]
            used_history = True
        else:
            row = model.score(np.array([-1]))[0]
        if hist is not None:
            row[hist] = -np.inf
        items, scores = top_k_row(row, k)
        finite = np.isfinite(scores)
        items, scores = items[finite], scores[finite]
        return Ranked(
            model=model_name,
            item_ids=[str(s) for s in self.item_ids[items]],
            scores=[float(s) for s in scores],
            known_user=user >= 0,
            used_history=used_history,
        )
