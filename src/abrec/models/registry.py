"""Build any recommender from a kind name and JSON-style parameters."""

from __future__ import annotations

import importlib
from typing import Any

from abrec.errors import ConfigError
from abrec.models.base import Recommender
from abrec.models.config import RecommenderConfig

_CLASSES: dict[str, str] = {
    "popularity": "abrec.models.popularity:Popularity",
    "itemknn": "abrec.models.knn:ItemKNN",
    "als": "abrec.models.als:ALS",
    "als_text": "abrec.models.coldmap:ALSText",
    "ease": "abrec.models.ease:EASE",
    "text_ease": "abrec.models.ease:TextEASE",
    "l3ae": "abrec.models.l3ae:L3AE",
    "lm": "abrec.models.lm:EmbeddingSimilarity",
    "hybrid": "abrec.models.hybrid:Hybrid",
    "ltr": "abrec.models.rerank:LTRReranker",
    "ltr_cf": "abrec.models.rerank:CFReranker",
    "two_tower": "abrec.models.two_tower:TwoTower",
    "cross_encoder": "abrec.models.cross_encoder:CrossEncoder",
}
"""Where each kind's class lives; imported on first use, so optional extras load lazily."""

MODEL_KINDS: tuple[str, ...] = tuple(_CLASSES)
"""Every kind `build_model` knows."""


def model_class(kind: str) -> type[Recommender]:
    """The Recommender class registered under `kind`."""
    if kind not in _CLASSES:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    module, _, qual = _CLASSES[kind].partition(":")
    klass: type[Recommender] = getattr(importlib.import_module(module), qual)
    return klass


def config_class(kind: str) -> type[RecommenderConfig]:
    """The pydantic config class of `kind`'s hyper-parameters."""
    return model_class(kind).config_class


def needs_encoder(kind: str) -> bool:
    """Whether models of `kind` read item texts through a text encoder (take `encoder=`)."""
    return model_class(kind).needs_encoder


def build_model(kind: str, **params: Any) -> Recommender:
    """A new, unfitted model of `kind` (see MODEL_KINDS) with `params`.

    `params` are validated by the kind's config class (`config_class(kind)`): an unknown key
    or a bad value raises ConfigError naming it. Kinds with `needs_encoder(kind)` also accept
    `encoder=` (an object with `.encode(texts)`; not part of the config).
    """
    return model_class(kind)(**params)
