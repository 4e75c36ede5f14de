"""Shared fixtures for every test layer: the real MovieLens latest-small data, when present."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from abrec.data import Interactions, ItemCatalog, MovieLensRaw, ProtocolSplit


class MLSmall(NamedTuple):
    """MovieLens latest-small as loaded by `movielens_dataset`; unpacks as `(inter, items)`."""

    inter: Interactions
    items: ItemCatalog


def _missing(reason: str) -> None:
    """Skip for missing data, but fail under CI (CI=true), where the data must be present."""
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{reason} (CI=true: the dataset is required)")
    pytest.skip(reason)


def _ml_dir() -> Path:
    env = os.environ.get("ABREC_DATA")
    if not env:
        _missing("ABREC_DATA is not set; point it at the folder holding ml-latest-small/")
    folder = Path(str(env)) / "ml-latest-small"
    if not (folder / "ratings.csv").is_file():
        _missing(f"{folder} has no ratings.csv; MovieLens latest-small is not available")
    return folder


@pytest.fixture
def locate_movielens() -> Callable[[], Path]:
    """The check `ml_small_dir` runs (exposed for its own test)."""
    return _ml_dir


@pytest.fixture(scope="session")
def ml_small_dir() -> Path:
    """Folder with the MovieLens latest-small CSVs (skips when missing; fails under CI)."""
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
