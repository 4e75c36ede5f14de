"""Hybrid: blend of normalised collaborative and language-model scores, plus cold-item scoring."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError, format_validation_error
from abrec.models._util import row_normalize
from abrec.models.base import Recommender, top_k
from abrec.models.config import RecommenderConfig, validate_config
from abrec.models.lm import EmbeddingSimilarity, EmbeddingSimilarityConfig, Encoder, default_encoder

NOT_CF_KINDS = ("lm", "hybrid")
"""Registry kinds that cannot be the collaborative component."""


def text_neighbours(
    emb: np.ndarray, targets: np.ndarray, sources: np.ndarray, k: int, block: int = 2048
) -> sp.csr_matrix:
    """Row-stochastic (len(targets) x len(sources)) weights over each target's k nearest sources.

    Ties in similarity go to the lower source index.

    Weights are the clipped-at-zero cosine similarities of the (unit-norm) embeddings,
    divided by their row sum; rows with no positive similarity are all zero.
    """
    k = min(k, len(sources))
    if k == 0 or len(targets) == 0:
        return sp.csr_matrix((len(targets), len(sources)), dtype=np.float32)
    rows, cols, vals = [], [], []
    for start in range(0, len(targets), block):
        sim = emb[targets[start : start + block]] @ emb[sources].T
        idx, v = top_k(sim, k)
        v = np.maximum(v, 0.0)
        rows.append(np.repeat(np.arange(start, start + len(sim)), k))
        cols.append(idx.ravel())
        vals.append(v.ravel())
    T = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(targets), len(sources)),
        dtype=np.float32,
    )
    T.eliminate_zeros()
    sums = np.asarray(T.sum(axis=1)).ravel()
    return (sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ T).tocsr().astype(np.float32)


class HybridConfig(RecommenderConfig):
    """Hybrid hyper-parameters (see `Hybrid`).

    `cf_params` is validated against the config class of the `cf` kind and stored complete
    (defaults filled in, None values left out), so a config round-trips through its JSON or
    TOML dump unchanged.
    """

    cf: str = "text_ease"
    cf_params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    lm_params: EmbeddingSimilarityConfig = EmbeddingSimilarityConfig()
    lm_weight: NonNegativeFloat = 0.2
    normalize: Literal["zscore", "minmax"] = "zscore"
    cold_neighbors: PositiveInt = 10
    cold_weight: NonNegativeFloat = 1.0
    cold_shift: float = -0.6

    @field_validator("cf")
    @classmethod
    def _collaborative_kind(cls, cf: str) -> str:
        from abrec.models.registry import MODEL_KINDS

        if cf not in MODEL_KINDS or cf in NOT_CF_KINDS:
            kinds = ", ".join(k for k in MODEL_KINDS if k not in NOT_CF_KINDS)
            raise ValueError(f"must be a collaborative model kind ({kinds}), got {cf!r}")
        return cf

    @field_validator("cf_params")
    @classmethod
    def _complete_cf_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from abrec.models.registry import model_class

        cf = info.data.get("cf")
        if cf is None:  # `cf` itself failed validation; that error is reported
            return params
        sub = model_class(cf).config_class
        try:
            # None values are left out (TOML has no null); they are the defaults of every
            # collaborative kind's optional keys, so validation restores them
            return sub.model_validate(params).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc, what=cf)) from None


class Hybrid(Recommender):
    """Collaborative + language-model blend that also ranks items never seen in training.

    For each user both components' scores are normalised per row (`normalize="zscore"`:
    mean 0 / sd 1, or `"minmax"`: [0, 1]), with the statistics taken over warm items (seen in
    training), and blended as ``z_cf + lm_weight * z_lm``.
    Cold items have no collaborative signal (CF scores are 0), so their CF part is predicted
    from text: the weighted mean of the user's normalised CF scores of the item's
    `cold_neighbors` nearest warm items in embedding space, times `cold_weight`, plus
    `cold_shift` (in normalised units; negative values make cold items harder to rank,
    reflecting that an unseen item is less likely relevant than an equally scored warm one).

    Defaults (text-regularised EASE with lambda 500, beta 20; LM half-life 5 interactions;
    lm_weight 0.2; 10 cold neighbours; cold_shift -0.6) were chosen on a temporal validation
    split carved out of the training data of ml-small-temporal-v1 (never on its test set):
    the highest validation NDCG@10 among settings that still rank some cold items in the top 10.

    `score_history` (users known only by an item history) is supported when the CF component
    supports it; the LM part then uses the plain, recency-free mean profile of the history.
    The components are used only through their public methods (`fit`, `score`,
    `score_history`, `get_state`/`set_state`); one encoder is shared by both.

    Args:
        config: a `HybridConfig` (or its fields as keyword parameters): `cf` is the registry
            kind of the collaborative component ("text_ease", "ease", "itemknn", ...),
            `cf_params` its parameters, `lm_params` those of the `EmbeddingSimilarity`
            component, then the blend settings described above.
        encoder: encoder object handed to the components that need one (not persisted).
    """

    name: ClassVar[str] = "hybrid"
    config_class: ClassVar[type[RecommenderConfig]] = HybridConfig
    config: HybridConfig
    needs_encoder: ClassVar[bool] = True

    def __init__(
        self,
        config: HybridConfig | Mapping[str, Any] | None = None,
        /,
        *,
        encoder: Encoder | None = None,
        **params: Any,
    ) -> None:
        super().__init__(config, **params)
        self.encoder = encoder
        self._build_components()
        self._warm: np.ndarray | None = None
        self._cold: np.ndarray | None = None
        self._T: sp.csr_matrix | None = None

    def _build_components(self) -> None:
        """(Re)build both components from their configs, handing them `self.encoder`."""
        from abrec.models.registry import model_class

        cf_class = model_class(self.config.cf)
        runtime = {"encoder": self.encoder} if cf_class.needs_encoder else {}
        self.cf_model: Recommender = cf_class.from_config(self.config.cf_params, **runtime)
        self.lm_model = EmbeddingSimilarity.from_config(self.config.lm_params, encoder=self.encoder)

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        if self.encoder is None:  # one encoder shared by both components
            self.encoder = default_encoder(self.config.lm_params.model)
            self._build_components()
        self.cf_model.fit(train, items)
        self.lm_model.fit(train, items)
        self._index_items()

    def _index_items(self) -> None:
        assert self._popularity is not None and self.lm_model.item_embeddings is not None
        warm = self._popularity > 0
        self._warm = warm
        self._cold = np.flatnonzero(~warm)
        self._T = text_neighbours(
            self.lm_model.item_embeddings,
            self._cold,
            np.flatnonzero(warm),
            self.config.cold_neighbors,
        )

    BLEND_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"lm_weight", "normalize", "cold_weight", "cold_shift"}
    )
    """Settings used only when blending scores: `set_blend` changes them without refitting."""

    def set_blend(self, **settings: Any) -> Hybrid:
        """Change blend settings (`BLEND_KEYS`) of a fitted or unfitted model, validated.

        The components are untouched, so e.g. a grid over `lm_weight` needs one fit.
        """
        other = sorted(set(settings) - self.BLEND_KEYS)
        if other:
            raise ConfigError(
                f"hybrid: {other} are not blend settings ({sorted(self.BLEND_KEYS)}); "
                "build a new model to change them"
            )
        self.config = validate_config(
            HybridConfig, {**self.config.model_dump(), **settings}, self.name
        )
        return self

    @property
    def supports_history(self) -> bool:
        """Histories are scored when the collaborative component can score them."""
        return self.cf_model.supports_history

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self._warm is not None
        if not self._warm.any():
            return self.lm_model.score(users)
        return self._blend(self.cf_model.score(users), self.lm_model.score(users))

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Both components score the history; blended exactly as for known users."""
        assert self._warm is not None
        histories = np.split(X.indices, X.indptr[1:-1])
        if not self._warm.any():
            return self.lm_model.score_history(histories)
        return self._blend(
            self.cf_model.score_history(histories), self.lm_model.score_history(histories)
        )

    def _blend(self, cf_scores: np.ndarray, lm_scores: np.ndarray) -> np.ndarray:
        """Normalised CF + lm_weight * normalised LM, with text-predicted CF for cold items."""
        assert self._warm is not None and self._cold is not None and self._T is not None
        cfg = self.config
        warm = self._warm
        zc = row_normalize(cf_scores, cfg.normalize, warm)
        zl = row_normalize(lm_scores, cfg.normalize, warm)
        out = zc + cfg.lm_weight * zl
        if len(self._cold):
            # sparse T times dense scores (scipy): every user's column is summed on its own
            predicted = np.asarray(self._T @ zc[:, warm].T).T
            out[:, self._cold] = (
                cfg.cold_weight * predicted + cfg.lm_weight * zl[:, self._cold] + cfg.cold_shift
            )
        return out.astype(np.float32)

    def _state(self) -> dict[str, Any]:
        return {"cf": self.cf_model.get_state(), "lm": self.lm_model.get_state()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.cf_model.set_state(state["cf"])
        self.lm_model.set_state(state["lm"])
        self._index_items()
