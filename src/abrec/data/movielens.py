"""MovieLens latest-small: locate or download (sha256-verified), load, and build the catalog."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import DataError, DatasetUnavailableError

DATASET_NAME = "ml-latest-small"
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
# sha256 of every file inside the official archive. The zip's own hash could not be
# confirmed offline, so the extracted content is what is pinned and verified.
MOVIELENS_FILE_SHA256: dict[str, str] = {
    "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
    "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
    "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
    "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
    "README.txt": "b394074d9f76e4e3a2f2b3a7a138df9ce2f566290e8be1b3c2db66f4061df899",
}
_CSV_FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv")
_HOW_TO_FIX = (
    "Set ABREC_DATA to a folder that contains ml-latest-small/ (ratings.csv, movies.csv, "
    f"tags.csv, links.csv), or go online so abrec can download {MOVIELENS_URL}."
)


@dataclass(frozen=True, eq=False)
class MovieLensRaw:
    """The four MovieLens tables as read from disk, plus the folder they came from."""

    ratings: pd.DataFrame
    movies: pd.DataFrame
    tags: pd.DataFrame
    links: pd.DataFrame
    path: Path


def default_cache_dir() -> Path:
    """`$ABREC_CACHE` or `~/.cache/abrec`."""
    env = os.environ.get("ABREC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "abrec"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _has_csvs(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _CSV_FILES)


def _candidate(folder: Path) -> Path | None:
    """`folder/ml-latest-small` or `folder` itself when it holds the CSV files."""
    for cand in (folder / DATASET_NAME, folder):
        if _has_csvs(cand):
            return cand
    return None


def _verify_files(folder: Path, source: str) -> None:
    """Check every extracted file against the pinned per-file sha256 values."""
    bad = []
    for name, expected in MOVIELENS_FILE_SHA256.items():
        f = folder / name
        if not f.is_file():
            bad.append(f"{name} (missing)")
        elif (got := sha256_file(f)) != expected:
            bad.append(f"{name} (sha256 {got[:12]}…, expected {expected[:12]}…)")
    if bad:
        raise DataError(
            f"{source} does not contain the official {DATASET_NAME} files: {', '.join(bad)}. "
            "Delete it and download again, or point ABREC_DATA at a verified copy."
        )


def download_movielens(cache_dir: str | Path | None = None, *, url: str | None = None) -> Path:
    """Download and verify the official zip into `cache_dir`; return the extracted folder.

    Every extracted file must match its pinned sha256, otherwise a `DataError` is raised
    and nothing is left in the cache.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / DATASET_NAME
    url = url or MOVIELENS_URL
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        zpath = Path(tmp) / f"{DATASET_NAME}.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, zpath.open("wb") as out:
                shutil.copyfileobj(resp, out)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DatasetUnavailableError(
                f"MovieLens is not available locally and the download of {url} failed ({exc}). "
                + _HOW_TO_FIX
            ) from exc
        extract = Path(tmp) / "extract"
        try:
            with zipfile.ZipFile(zpath) as zf:
                for member in zf.namelist():
                    name = Path(member).name
                    if name in MOVIELENS_FILE_SHA256 and not member.endswith("/"):
                        extract.mkdir(exist_ok=True)
                        with zf.open(member) as src, (extract / name).open("wb") as dst:
                            shutil.copyfileobj(src, dst)
        except zipfile.BadZipFile as exc:
            raise DataError(
                f"The download from {url} is not a valid zip archive ({exc}). Try again later. "
                + _HOW_TO_FIX
            ) from exc
        _verify_files(extract, f"The archive downloaded from {url}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(extract, target)
    return target


def locate_movielens(
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> Path:
    """Folder with the MovieLens CSVs: `data_dir`, `$ABREC_DATA`, the cache, else a download."""
    if data_dir is not None:
        found = _candidate(Path(data_dir).expanduser())
        if found is None:
            raise DatasetUnavailableError(
                f"{data_dir} does not contain {DATASET_NAME}/ with {', '.join(_CSV_FILES)}. "
                + _HOW_TO_FIX
            )
        return found
    env = os.environ.get("ABREC_DATA")
    if env and (found := _candidate(Path(env).expanduser())) is not None:
        return found
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if (found := _candidate(cache)) is not None:
        return found
    if not download:
        raise DatasetUnavailableError(f"{DATASET_NAME} was not found. " + _HOW_TO_FIX)
    return download_movielens(cache)


def load_movielens(
    data_dir: str | Path | None = None, *, cache_dir: str | Path | None = None
) -> MovieLensRaw:
    """Read ratings, movies, tags and links of MovieLens latest-small."""
    folder = locate_movielens(data_dir, cache_dir=cache_dir)
    try:
        ratings = pd.read_csv(
            folder / "ratings.csv",
            dtype={
                "userId": np.int64,
                "movieId": np.int64,
                "rating": np.float64,
                "timestamp": np.int64,
            },
        )
        movies = pd.read_csv(
            folder / "movies.csv", dtype={"movieId": np.int64, "title": str, "genres": str}
        )
        tags = pd.read_csv(
            folder / "tags.csv",
            dtype={"userId": np.int64, "movieId": np.int64, "tag": str, "timestamp": np.int64},
            keep_default_na=False,
        )
        links = pd.read_csv(
            folder / "links.csv", dtype={"movieId": "int64", "imdbId": "str", "tmdbId": "Int64"}
        )
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise DataError(
            f"Could not parse the MovieLens files in {folder} ({exc}). "
            "Replace them with the official files or unset ABREC_DATA to download them."
        ) from exc
    expected = {
        "ratings.csv": (ratings, ["userId", "movieId", "rating", "timestamp"]),
        "movies.csv": (movies, ["movieId", "title", "genres"]),
        "tags.csv": (tags, ["userId", "movieId", "tag", "timestamp"]),
        "links.csv": (links, ["movieId", "imdbId", "tmdbId"]),
    }
    for name, (frame, cols) in expected.items():
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"{folder / name}: missing column(s) {missing}; expected {cols}.")
    return MovieLensRaw(ratings=ratings, movies=movies, tags=tags, links=links, path=folder)


_YEAR_RE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\)\s*$")
_ARTICLE_RE = re.compile(
    r"^(?P<body>.+?), (?P<art>The|A|An|Les|La|Le|L'|Il|El|Die|Das|Der)(?P<rest>(?: \(.*\))?)$"
)


def split_title(title: str) -> tuple[str, int | None]:
    """`"American President, The (1995)"` -> `("The American President", 1995)`."""
    title = title.strip()
    m = _YEAR_RE.match(title)
    year: int | None = None
    if m:
        title, year = m.group("title").strip(), int(m.group("year"))
    a = _ARTICLE_RE.match(title)
    if a:
        sep = "" if a.group("art").endswith("'") else " "
        title = f"{a.group('art')}{sep}{a.group('body')}{a.group('rest')}"
    return title, year


def top_tags(tags: pd.DataFrame, n_tags: int) -> pd.Series:
    """Per movie, its `n_tags` most frequent tags (lower-cased, deduped, ties alphabetical)."""
    if n_tags <= 0 or tags.empty:
        return pd.Series(dtype=object)
    t = pd.DataFrame(
        {
            "movieId": tags["movieId"].to_numpy(),
            "tag": tags["tag"].astype(str).str.strip().str.lower().str.split().str.join(" "),
        }
    )
    t = t[t["tag"] != ""]
    counts = t.groupby(["movieId", "tag"], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values(["movieId", "n", "tag"], ascending=[True, False, True])
    counts = counts.groupby("movieId", sort=False).head(n_tags)
    return counts.groupby("movieId", sort=False)["tag"].agg(list)


def movielens_catalog(raw: MovieLensRaw, n_tags: int = 5) -> ItemCatalog:
    """Catalog in movies.csv order with text "Title. Year: Y. Genres: A, B. Tags: x, y."."""
    movies = raw.movies
    parsed = [split_title(t) for t in movies["title"].astype(str)]
    titles = [p[0] for p in parsed]
    years = pd.array([p[1] for p in parsed], dtype="Int64")
    genres = [
        () if g in ("(no genres listed)", "") else tuple(g.split("|"))
        for g in movies["genres"].fillna("").astype(str)
    ]
    tag_lists = top_tags(raw.tags, n_tags)
    item_tags = tag_lists.reindex(movies["movieId"].to_numpy())
    texts = []
    for title, year, gs, tg in zip(titles, years, genres, item_tags, strict=True):
        parts = [title]
        if year is not pd.NA:
            parts.append(f"Year: {year}")
        if gs:
            parts.append(f"Genres: {', '.join(gs)}")
        if isinstance(tg, list) and tg:
            parts.append(f"Tags: {', '.join(tg)}")
        texts.append(". ".join(parts) + ".")
    links = raw.links.set_index("movieId").reindex(movies["movieId"].to_numpy())
    features = pd.DataFrame(
        {
            "title": titles,
            "year": years,
            "genres": genres,
            "imdb_id": links["imdbId"].to_numpy(),
            "tmdb_id": links["tmdbId"].array,
        }
    )
    return ItemCatalog(
        item_ids=movies["movieId"].to_numpy(np.int64),
        text=np.asarray(texts, dtype=object),
        features=features,
    )


def movielens_interactions(raw: MovieLensRaw) -> Interactions:
    """All ratings over users (sorted ids) x items (movies.csv order), ratings and timestamps kept."""
    ratings = raw.ratings
    user_ids = np.unique(ratings["userId"].to_numpy(np.int64))
    item_ids = raw.movies["movieId"].to_numpy(np.int64)
    item_idx = pd.Index(item_ids).get_indexer(ratings["movieId"].to_numpy())
    if (item_idx < 0).any():
        bad = ratings.loc[item_idx < 0].head(5)
        raise DataError(
            f"{raw.path / 'ratings.csv'}: {int((item_idx < 0).sum())} rating(s) refer to movieIds "
            f"missing from movies.csv; first rows:\n{bad.to_string()}\n"
            "Use the official, unmodified MovieLens files."
        )
    return Interactions(
        user_idx=np.searchsorted(user_ids, ratings["userId"].to_numpy(np.int64)).astype(np.int64),
        item_idx=item_idx.astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=ratings["rating"].to_numpy(np.float32),
        timestamps=ratings["timestamp"].to_numpy(np.int64),
    )


def movielens_dataset(
    data_dir: str | Path | None = None, n_tags: int = 5, *, cache_dir: str | Path | None = None
) -> tuple[Interactions, ItemCatalog]:
    """MovieLens latest-small as (Interactions over all 610 users x 9,742 movies, ItemCatalog)."""
    raw = load_movielens(data_dir, cache_dir=cache_dir)
    return movielens_interactions(raw), movielens_catalog(raw, n_tags=n_tags)
