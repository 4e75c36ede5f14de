"""Recommenders behind one batch interface."""

from abrec.models.base import Recommender, top_k

__all__ = ["Recommender", "top_k"]
