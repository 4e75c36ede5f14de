"""Recommenders behind one batch interface."""

from abrec.models.base import Recommender, top_k
from abrec.models.registry import LM_KINDS, MODEL_KINDS, build_model

__all__ = ["LM_KINDS", "MODEL_KINDS", "Recommender", "build_model", "top_k"]
