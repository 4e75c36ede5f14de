"""Shared fixtures for every test layer: the real MovieLens latest-small data, when present."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest

from abrec.data import Interactions, ItemCatalog, MovieLensRaw, ProtocolSplit


class MLSmall(NamedTuple):
    """MovieLens latest-small as loaded by `movielens_dataset`; unpacks as `(inter, items)`."""

    inter: Interactions
    items: ItemCatalog


def _ml_dir() -> Path:
    env = os.environ.get("ABREC_DATA")
    if not env:
        pytest.skip("ABREC_DATA is not set; point it at the folder holding ml-latest-small/")
    folder = Path(env) / "ml-latest-small"
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"{folder} has no ratings.csv; MovieLens latest-small is not available")
    return folder


@pytest.fixture(scope="session")
def ml_small_dir() -> Path:
    """Folder with the MovieLens latest-small CSVs (skips when ABREC_DATA is missing)."""
    return _ml_dir()


@pytest.fixture(scope="session")
def ml_small_raw(ml_small_dir: Path) -> MovieLensRaw:
    """The four raw MovieLens tables."""
    from abrec.data import load_movielens

    return load_movielens(ml_small_dir)


@pytest.fixture(scope="session")
def ml_small(ml_small_raw: MovieLensRaw) -> MLSmall:
    """All 610 users x 9,742 movies with ratings/timestamps, and the item catalog."""
    from abrec.data import movielens_catalog, movielens_interactions

    return MLSmall(movielens_interactions(ml_small_raw), movielens_catalog(ml_small_raw))


@pytest.fixture(scope="session")
def ml_small_split(ml_small: MLSmall) -> ProtocolSplit:
    """Protocol ml-small-temporal-v1 on the real data."""
    from abrec.data import ml_small_temporal_v1

    return ml_small_temporal_v1(ml_small.inter)
