"""The one recommender interface every model implements (DESIGN.md contract)."""

from __future__ import annotations

import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError, DataError, NotFittedError
from abrec.models.config import RecommenderConfig, validate_config


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k (descending, ties broken by lower item index, exactly), vectorised."""
    n, m = scores.shape
    k = min(k, m)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=scores.dtype)
    if k < m:
        # k-th largest value per row; keep everything above it plus the lowest-index ties.
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        above = scores > kth
        tied = scores == kth
        need = k - above.sum(axis=1, keepdims=True)
        select = above | (tied & (np.cumsum(tied, axis=1) <= need))
        part = np.nonzero(select)[1].reshape(n, k)
    else:
        part = np.tile(np.arange(m), (n, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    items = np.take_along_axis(part, order, axis=1)
    return items.astype(np.int64), np.take_along_axis(part_scores, order, axis=1)


def top_k_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of one 1-D row: the same items in the same order (descending, ties broken
    by lower item index), in a few passes over the row instead of the 2-D ones."""
    m = scores.shape[0]
    k = min(k, m)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    if k < m:
        kth = -np.partition(-scores, k - 1)[k - 1]
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)[: k - len(above)]
        part = np.concatenate((above, tied))
    else:
        part = np.arange(m)
    part_scores = scores[part]
    order = np.lexsort((part, -part_scores))
    return part[order].astype(np.int64), part_scores[order]


def history_matrix(histories: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary float32 CSR (len(histories) x n_items): row r marks the item indices in histories[r].

    Repeated items count once. Raises DataError for an index outside [0, n_items).
    """
    arrays = [np.asarray(h).ravel() for h in histories]
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    cols = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    if cols.dtype.kind not in "iu" and not (
        cols.dtype.kind == "f" and np.array_equal(cols, np.round(cols))
    ):
        raise DataError("history item indices must be integers; map item ids to indices first")
    cols = cols.astype(np.int64)
    bad = (cols < 0) | (cols >= n_items)
    if bad.any():
        raise DataError(
            f"history item index {int(cols[bad][0])} is outside [0, {n_items}); map external "
            "item ids to the model's item indices and drop unknown items first"
        )
    rows = np.repeat(np.arange(len(arrays)), lengths)
    X = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(arrays), n_items)
    )
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


class Recommender(ABC):
    """Batch recommender: `fit`, `score`, `recommend`, `save`, `load`.

    Users are dense indices of the training `Interactions`; an index outside
    `[0, n_users)` (e.g. -1) is an unknown user and gets `cold_user_scores`.
    Subclasses implement `_fit` and `_score_known`; the base handles unknown users,
    seen-item exclusion, top-k and persistence (numpy arrays + JSON params).

    Hyper-parameters live in one validated pydantic config (`config_class`): build a model
    with `Model(**params)`, `Model(config)` or `Model.from_config(config)`, read it back with
    `get_config()`; `params()` is its JSON dump. Composite models reach their parts only
    through the public methods (`fit`, `score`, `score_history`, `get_state`, `set_state`).

    Optional capability: a model that can score users known only by the items they
    interacted with (anonymous visitors, users newer than the model) implements
    `_score_history`; `supports_history` is then true and `score_history` works.

    Contract: a user's scores are bit-identical whatever other users share the batch.
    """

    name: ClassVar[str] = "recommender"
    config_class: ClassVar[type[RecommenderConfig]] = RecommenderConfig
    """The pydantic class of this model's hyper-parameters."""
    needs_encoder: ClassVar[bool] = False
    """Whether the model reads item texts through a text encoder (accepts `encoder=`)."""

    def __init__(
        self, config: RecommenderConfig | Mapping[str, Any] | None = None, /, **params: Any
    ) -> None:
        if config is not None and params:
            raise ConfigError(f"{self.name}: pass either a config or keyword parameters")
        if config is not None and not isinstance(config, RecommenderConfig | Mapping):
            raise ConfigError(
                f"{self.name}: the positional argument is a config ({self.config_class.__name__}"
                f" or a mapping), got {config!r}; pass parameters by keyword"
            )
        if isinstance(config, self.config_class):
            self.config = config
        else:
            if isinstance(config, RecommenderConfig):
                config = config.model_dump()
            self.config = validate_config(self.config_class, config or params, self.name)
        self._train: sp.csr_matrix | None = None
        self._popularity: np.ndarray | None = None

    @classmethod
    def from_config(cls, config: RecommenderConfig | Mapping[str, Any], **runtime: Any) -> Self:
        """A new, unfitted model from its config; `runtime` holds non-persisted objects
        (e.g. `encoder=` for models with `needs_encoder`)."""
        return cls(config, **runtime)

    def get_config(self) -> RecommenderConfig:
        """The validated hyper-parameters this model was built with."""
        return self.config

    # --- to implement -------------------------------------------------------------
    @abstractmethod
    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        """Learn the model's state from training data."""

    @abstractmethod
    def _score_known(self, users: np.ndarray) -> np.ndarray:
        """Scores (len(users) x n_items) for valid user indices."""

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Scores (X.shape[0] x n_items) for binary history rows X, each with >= 1 item.

        Optional: override to support `score_history`.
        """
        raise NotImplementedError(f"{self.name} cannot score users from an item history")

    def params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serialisable) used by save/load: the config's dump."""
        return self.config.model_dump(mode="json")

    def _state(self) -> dict[str, Any]:
        """Learned arrays (numpy or scipy.sparse) to persist; override to add more."""
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore what `_state` returned."""
        return None

    def get_state(self) -> dict[str, Any]:
        """Everything learned (training matrix, popularity and the model's own arrays).

        `set_state` on a model built with the same config restores it exactly; composite
        models persist their parts through this pair.
        """
        own = self._state()
        return {"__train__": self._require_train(), "__popularity__": self._popularity, **own}

    def set_state(self, state: Mapping[str, Any]) -> Self:
        """Restore what `get_state` returned (the model is then fitted)."""
        rest = dict(state)
        self._train = rest.pop("__train__")
        self._popularity = rest.pop("__popularity__")
        self._set_state(rest)
        return self

    # --- shared behaviour ---------------------------------------------------------
    def fit(self, train: Interactions, items: ItemCatalog) -> Self:
        """Fit on training interactions; items align with train columns."""
        if train.n_items != len(items):
            raise ValueError(
                f"train has {train.n_items} item columns but the catalog has {len(items)} items"
            )
        # no copy when the cached matrix already is float32 CSR: composite models' parts
        # then share one training matrix (also in a saved state)
        self._train = train.matrix.tocsr().astype(np.float32, copy=False)
        self._popularity = np.asarray(self._train.sum(axis=0)).ravel().astype(np.float32)
        self._fit(train, items)
        return self

    @property
    def is_fitted(self) -> bool:
        return self._train is not None

    @property
    def n_users(self) -> int:
        return self._require_train().shape[0]

    @property
    def n_items(self) -> int:
        return self._require_train().shape[1]

    @property
    def train_matrix(self) -> sp.csr_matrix:
        """The binary float32 user x item training matrix the model was fitted on."""
        return self._require_train()

    def _require_train(self) -> sp.csr_matrix:
        if self._train is None:
            raise NotFittedError(f"{self.name}: call fit() or load() before scoring")
        return self._train

    def cold_user_scores(self) -> np.ndarray:
        """Scores for users without history: training popularity by default."""
        self._require_train()
        assert self._popularity is not None
        return self._popularity / max(float(self._popularity.max()), 1.0)

    def score(self, users: np.ndarray) -> np.ndarray:
        """Scores for a batch of user indices (float32, batch x n_items)."""
        train = self._require_train()
        users = np.asarray(users, dtype=np.int64).ravel()
        out = np.empty((len(users), train.shape[1]), dtype=np.float32)
        known = (users >= 0) & (users < train.shape[0])
        if known.any():
            out[known] = self._score_known(users[known])
        if (~known).any():
            out[~known] = self.cold_user_scores()
        return out

    def score_user(self, user: int) -> np.ndarray:
        """`score([user])[0]` (bit-identical), for serving one request: a model may compute
        the one row without the batch machinery. The array is the caller's to modify."""
        return self.score(np.array([user], dtype=np.int64))[0]

    @property
    def supports_history(self) -> bool:
        """Whether `score_history` works (the class implements `_score_history`)."""
        return type(self)._score_history is not Recommender._score_history

    def score_history(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores (float32, len(histories) x n_items) for users given only their item histories.

        Args:
            histories: one array of item indices (columns of the training data) per user;
                repeats count once, order is ignored. An empty history gets `cold_user_scores`.
        Raises:
            NotImplementedError: the model does not support histories (`supports_history`).
            DataError: an item index is outside [0, n_items).
        """
        train = self._require_train()
        if not self.supports_history:
            raise NotImplementedError(
                f"{self.name} cannot score users from an item history; use a model with "
                "supports_history (e.g. ease, itemknn, lm, hybrid) or score([-1]) for popularity"
            )
        X = history_matrix(histories, train.shape[1])
        out = np.empty(X.shape, dtype=np.float32)
        has = np.diff(X.indptr) > 0
        if has.any():
            out[has] = self._score_history(X[np.flatnonzero(has)])
        if (~has).any():
            out[~has] = self.cold_user_scores()
        return out

    def recommend(
        self, users: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per user (each `len(users) x k`)."""
        train = self._require_train()
        users = np.asarray(users, dtype=np.int64).ravel()
        scores = self.score(users)
        if exclude_seen:
            known = np.flatnonzero((users >= 0) & (users < train.shape[0]))
            seen = train[users[known]].tocoo()
            scores[known[seen.row], seen.col] = -np.inf
        return top_k(scores, k)

    # --- persistence --------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write params (`model.json`) and the learned state (`state.pkl`) into directory `path`."""
        state = self.get_state()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.params(),
        }
        (path / "model.json").write_text(json.dumps(meta, indent=2))
        with open(path / "state.pkl", "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a model saved by `save` (returns an instance of the saved class)."""
        import importlib

        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        module, _, qual = meta["class"].rpartition(".")
        klass = getattr(importlib.import_module(module), qual)
        if not (isinstance(klass, type) and issubclass(klass, Recommender)):
            raise TypeError(f"{meta['class']} is not a Recommender")
        obj = klass(**meta["params"])
        with open(path / "state.pkl", "rb") as fh:
            return obj.set_state(pickle.load(fh))
