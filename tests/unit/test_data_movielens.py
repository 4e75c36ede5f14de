"""MovieLens loader: title parsing, tag ranking, catalog text, locating and verified download."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import abrec.data.movielens as ml
from abrec.data import load_movielens, movielens_catalog, movielens_interactions
from abrec.data.movielens import MovieLensRaw, split_title, top_tags
from abrec.errors import DataError, DatasetUnavailableError


@pytest.mark.parametrize(
    ("raw", "title", "year"),
    [
        ("Toy Story (1995)", "Toy Story", 1995),
        ("American President, The (1995)", "The American President", 1995),
        (
            "City of Lost Children, The (Cité des enfants perdus, La) (1995)",
            "The City of Lost Children (Cité des enfants perdus, La)",
            1995,
        ),
        ("Death Note: Desu nôto (2006–2007)", "Death Note: Desu nôto", 2006),
        ("Babylon 5", "Babylon 5", None),
        ("Misérables, Les (1995) ", "Les Misérables", 1995),
        ("2001: A Space Odyssey (1968)", "2001: A Space Odyssey", 1968),
    ],
)
def test_split_title(raw: str, title: str, year: int | None) -> None:
    assert split_title(raw) == (title, year)


def test_top_tags_lowercase_dedup_frequency_then_alphabetical() -> None:
    tags = pd.DataFrame(
        {
            "movieId": [1, 1, 1, 1, 1, 1, 1, 2],
            "tag": ["Pixar", "pixar ", "fun", "Zany", "abc", "Fun", "PIXAR", "x"],
        }
    )
    got = top_tags(tags, 3)
    # pixar x3, fun x2, then abc and zany tie at 1 -> alphabetical: abc
    assert got.loc[1] == ["pixar", "fun", "abc"]
    assert got.loc[2] == ["x"]
    assert top_tags(tags, 0).empty


def tiny_raw(tmp_path: Path) -> MovieLensRaw:
    return MovieLensRaw(
        ratings=pd.DataFrame(
            {
                "userId": [7, 3, 7],
                "movieId": [2, 1, 1],
                "rating": [4.0, 3.5, 5.0],
                "timestamp": [10, 20, 30],
            }
        ),
        movies=pd.DataFrame(
            {
                "movieId": [2, 1, 9],
                "title": ["Heat (1995)", "Toy Story (1995)", "Nothing"],
                "genres": ["Action|Crime", "Animation", "(no genres listed)"],
            }
        ),
        tags=pd.DataFrame(
            {"userId": [3, 3], "movieId": [1, 1], "tag": ["Pixar", "fun"], "timestamp": [1, 2]}
        ),
        links=pd.DataFrame(
            {
                "movieId": [1, 2, 9],
                "imdbId": ["0114709", "0113277", "0000001"],
                "tmdbId": pd.array([862, 949, None], dtype="Int64"),
            }
        ),
        path=tmp_path,
    )


def test_catalog_text_and_features(tmp_path: Path) -> None:
    cat = movielens_catalog(tiny_raw(tmp_path))
    assert cat.item_ids.tolist() == [2, 1, 9]  # movies.csv order
    assert cat.text.tolist() == [
        "Heat. Year: 1995. Genres: Action, Crime.",
        "Toy Story. Year: 1995. Genres: Animation. Tags: fun, pixar.",  # tie: alphabetical
        "Nothing.",
    ]
    f = cat.features
    assert f is not None
    assert f["year"].tolist()[:2] == [1995, 1995] and pd.isna(f["year"].iloc[2])
    assert f["genres"].tolist() == [("Action", "Crime"), ("Animation",), ()]
    assert f["imdb_id"].tolist() == ["0113277", "0114709", "0000001"]


def test_interactions_index_spaces(tmp_path: Path) -> None:
    inter = movielens_interactions(tiny_raw(tmp_path))
    assert inter.user_ids.tolist() == [3, 7]
    assert inter.item_ids.tolist() == [2, 1, 9]
    assert inter.user_idx.tolist() == [1, 0, 1]
    assert inter.item_idx.tolist() == [0, 1, 1]
    assert inter.matrix.shape == (2, 3)
    assert inter.ratings is not None and inter.ratings.dtype == np.float32
    assert inter.timestamps is not None and inter.timestamps.tolist() == [10, 20, 30]


def test_rating_of_unknown_movie_is_a_data_error(tmp_path: Path) -> None:
    raw = tiny_raw(tmp_path)
    raw.ratings.loc[0, "movieId"] = 12345
    with pytest.raises(DataError, match=r"missing from movies\.csv"):
        movielens_interactions(raw)


def test_explicit_dir_without_files_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="ABREC_DATA"):
        load_movielens(tmp_path)


def test_offline_without_data_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ABREC_DATA", raising=False)
    monkeypatch.setattr(ml, "MOVIELENS_URL", "http://127.0.0.1:9/ml-latest-small.zip")
    with pytest.raises(DatasetUnavailableError) as err:
        load_movielens(cache_dir=tmp_path / "cache")
    assert "Set ABREC_DATA" in str(err.value) and "download" in str(err.value)
    assert not (tmp_path / "cache" / "ml-latest-small").exists()


def _zip_from(folder: Path, dest: Path, tamper: str | None = None) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for name in ml.MOVIELENS_FILE_SHA256:
            data = (folder / name).read_bytes()
            if name == tamper:
                data = data.replace(b"Toy Story", b"Toy Storm")
            zf.writestr(f"ml-latest-small/{name}", data)
    return dest


def test_download_verifies_and_caches(
    ml_small_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _zip_from(ml_small_dir, tmp_path / "good.zip")
    monkeypatch.delenv("ABREC_DATA", raising=False)
    monkeypatch.setattr(ml, "MOVIELENS_URL", good.as_uri())
    cache = tmp_path / "cache"
    raw = load_movielens(cache_dir=cache)
    assert raw.path == cache / "ml-latest-small"
    assert len(raw.ratings) == 100_836 and len(raw.movies) == 9_742
    # second call finds the cache and does not download again
    monkeypatch.setattr(ml, "MOVIELENS_URL", "http://127.0.0.1:9/gone.zip")
    assert load_movielens(cache_dir=cache).path == raw.path


def test_download_rejects_tampered_archive(
    ml_small_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _zip_from(ml_small_dir, tmp_path / "bad.zip", tamper="movies.csv")
    with pytest.raises(DataError, match=r"movies\.csv \(sha256"):
        ml.download_movielens(tmp_path / "cache", url=bad.as_uri())
    assert not (tmp_path / "cache" / "ml-latest-small").exists()
    notzip = tmp_path / "x.zip"
    notzip.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        ml.download_movielens(tmp_path / "cache", url=notzip.as_uri())


def test_shared_copy_matches_pinned_hashes(ml_small_dir: Path) -> None:
    ml._verify_files(ml_small_dir, str(ml_small_dir))
