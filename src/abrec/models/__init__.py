"""Recommenders behind one batch interface, each built from a validated config."""

from abrec.models.base import Recommender, top_k, top_k_row
from abrec.models.config import RecommenderConfig
from abrec.models.registry import MODEL_KINDS, build_model, config_class, model_class, needs_encoder

__all__ = [
    "MODEL_KINDS",
    "Recommender",
    "RecommenderConfig",
    "build_model",
    "config_class",
    "model_class",
    "needs_encoder",
    "top_k",
    "top_k_row",
]
