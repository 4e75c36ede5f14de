"""Data loading, contracts and splits."""

from abrec.data.generic import load_interactions
from abrec.data.movielens import (
    MovieLensRaw,
    download_movielens,
    load_movielens,
    movielens_catalog,
    movielens_dataset,
    movielens_interactions,
)
from abrec.data.splits import (
    ProtocolSplit,
    leave_last_one_out,
    ml_small_temporal_v1,
    protocol_split,
    random_split,
    temporal_user_split,
)
from abrec.data.types import Interactions, ItemCatalog

__all__ = [
    "Interactions",
    "ItemCatalog",
    "MovieLensRaw",
    "ProtocolSplit",
    "download_movielens",
    "leave_last_one_out",
    "load_interactions",
    "load_movielens",
    "ml_small_temporal_v1",
    "movielens_catalog",
    "movielens_dataset",
    "movielens_interactions",
    "protocol_split",
    "random_split",
    "temporal_user_split",
]
