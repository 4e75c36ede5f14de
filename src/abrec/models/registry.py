"""Build any recommender from a kind name and JSON-style parameters."""

from __future__ import annotations

import importlib
from typing import Any

from abrec.errors import ConfigError
from abrec.models.base import Recommender

_CLASSES: dict[str, str] = {
    "popularity": "abrec.models.popularity:Popularity",
    "itemknn": "abrec.models.knn:ItemKNN",
    "als": "abrec.models.als:ALS",
    "ease": "abrec.models.ease:EASE",
    "text_ease": "abrec.models.ease:TextEASE",
    "lm": "abrec.models.lm:EmbeddingSimilarity",
    "hybrid": "abrec.models.hybrid:Hybrid",
    "ltr": "abrec.models.rerank:LTRReranker",
    "ltr_cf": "abrec.models.rerank:CFReranker",
}
"""Where each kind's class lives; imported on first use, so optional extras load lazily."""

MODEL_KINDS: tuple[str, ...] = tuple(_CLASSES)
"""Every kind `build_model` knows; "text_ease", "lm", "hybrid" and "ltr" use a language model."""

LM_KINDS: tuple[str, ...] = ("text_ease", "lm", "hybrid", "ltr")


def model_class(kind: str) -> type[Recommender]:
    """The Recommender class registered under `kind`."""
    if kind not in _CLASSES:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    module, _, qual = _CLASSES[kind].partition(":")
    klass: type[Recommender] = getattr(importlib.import_module(module), qual)
    return klass


def build_model(kind: str, **params: Any) -> Recommender:
    """A new, unfitted model of `kind` (see MODEL_KINDS) with `params`.

    Hybrid takes `cf` (a kind), `cf_params`, `lm_params` and blend settings; the LM_KINDS
    also accept `encoder=` (an object with `.encode(texts)`).
    """
    klass = model_class(kind)
    try:
        return klass(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for model kind {kind!r}: {exc}") from exc
