"""Build any recommender from a kind name and JSON-style parameters."""

from __future__ import annotations

from typing import Any

from abrec.errors import ConfigError
from abrec.models.base import Recommender

MODEL_KINDS: tuple[str, ...] = ("popularity", "itemknn", "als", "ease", "text_ease", "lm", "hybrid")
"""Every kind `build_model` knows; "text_ease", "lm" and "hybrid" use a language model."""

LM_KINDS: tuple[str, ...] = ("text_ease", "lm", "hybrid")


def model_class(kind: str) -> type[Recommender]:
    """The Recommender class registered under `kind`."""
    if kind == "popularity":
        from abrec.models.popularity import Popularity

        return Popularity
    if kind == "itemknn":
        from abrec.models.knn import ItemKNN

        return ItemKNN
    if kind == "als":
        from abrec.models.als import ALS

        return ALS
    if kind == "ease":
        from abrec.models.ease import EASE

        return EASE
    if kind == "text_ease":
        from abrec.models.ease import TextEASE

        return TextEASE
    if kind == "lm":
        from abrec.models.lm import EmbeddingSimilarity

        return EmbeddingSimilarity
    if kind == "hybrid":
        from abrec.models.hybrid import Hybrid

        return Hybrid
    raise ConfigError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


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
