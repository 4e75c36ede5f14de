"""Data loading, contracts and splits."""

from abrec.data.types import Interactions, ItemCatalog

__all__ = ["Interactions", "ItemCatalog"]
