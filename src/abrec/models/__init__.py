"""Recommenders behind one batch interface, each built from a validated config."""

from typing import Any

from abrec.models.base import Recommender, top_k
from abrec.models.config import RecommenderConfig
from abrec.models.registry import MODEL_KINDS, build_model, config_class, model_class, needs_encoder

__all__ = [
    "LM_KINDS",
    "MODEL_KINDS",
    "Recommender",
    "RecommenderConfig",
    "build_model",
    "config_class",
    "model_class",
    "needs_encoder",
    "top_k",
]


def __getattr__(name: str) -> Any:
    """`LM_KINDS` (kinds that need the text encoder), derived lazily from the registry."""
    if name == "LM_KINDS":
        from abrec.models import registry

        return registry.LM_KINDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
