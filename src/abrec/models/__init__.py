"""Recommenders behind one batch interface."""

from abrec.models.base import Recommender, top_k
from abrec.models.registry import MODEL_KINDS, build_model

__all__ = ["MODEL_KINDS", "Recommender", "build_model", "top_k"]
