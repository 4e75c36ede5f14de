"""On-disk embedding cache keyed by (model identity, sha256 of the text)."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from abrec.errors import DataError

_MAX_SHARDS = 16


def default_embedding_cache_dir() -> Path:
    """`$ABREC_CACHE/embeddings` or `~/.cache/abrec/embeddings`."""
    env = os.environ.get("ABREC_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "abrec"
    return base / "embeddings"


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """sha256 digest of each text's UTF-8 bytes, as a fixed-width bytes array (S32)."""
    return np.array(
        [hashlib.sha256(t.encode("utf-8")).digest() for t in texts], dtype="S32"
    ).reshape(len(texts))


def _slug(identity: str) -> str:
    """Folder name for a model identity: readable prefix + hash of the full identity."""
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", identity)[:60].strip("_") or "model"
    return f"{readable}-{digest}"


class EmbeddingCache:
    """Append-only shards of (text key, vector) per model identity; safe across processes.

    Each `put` writes one new shard atomically (temp file + rename), so concurrent writers
    never corrupt each other; shards are merged once there are more than 16.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = (
            Path(directory).expanduser() if directory is not None else default_embedding_cache_dir()
        )
        self._index: dict[str, tuple[dict[bytes, int], np.ndarray, tuple[str, ...]]] = {}

    def _folder(self, identity: str) -> Path:
        return self.directory / _slug(identity)

    def _shards(self, identity: str) -> list[Path]:
        folder = self._folder(identity)
        return sorted(folder.glob("shard-*.npz")) if folder.is_dir() else []

    def _load(self, identity: str) -> tuple[dict[bytes, int], np.ndarray]:
        """Key -> row lookup and the vector matrix for an identity (reloaded if shards changed)."""
        shards = self._shards(identity)
        names = tuple(s.name for s in shards)
        cached = self._index.get(identity)
        if cached is not None and cached[2] == names:
            return cached[0], cached[1]
        keys_parts, vec_parts = [], []
        for shard in shards:
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys_parts.append(z["keys"])
                    vec_parts.append(z["vectors"])
            except (OSError, ValueError, KeyError):
                continue  # a shard being written by another process or truncated: ignore it
        if not keys_parts:
            lookup: dict[bytes, int] = {}
            vectors = np.zeros((0, 0), dtype=np.float32)
        else:
            dims = {v.shape[1] for v in vec_parts}
            if len(dims) != 1:
                raise DataError(
                    f"embedding cache {self._folder(identity)} mixes dimensions {sorted(dims)}; "
                    "delete that folder."
                )
            keys = np.concatenate(keys_parts)
            vectors = np.concatenate(vec_parts).astype(np.float32, copy=False)
            lookup = {k: i for i, k in enumerate(keys.tolist())}
        self._index[identity] = (lookup, vectors, names)
        return lookup, vectors

    def get(self, identity: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors for the found keys in order) for the given text keys."""
        lookup, vectors = self._load(identity)
        rows = np.fromiter(
            (lookup.get(k, -1) for k in keys.tolist()), dtype=np.int64, count=len(keys)
        )
        found = rows >= 0
        return found, vectors[rows[found]] if found.any() else np.zeros((0, 0), np.float32)

    def put(self, identity: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Store vectors for keys (one new shard); merges shards when there are too many."""
        if len(keys) == 0:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise DataError("put() needs one 2-D vector row per key")
        folder = self._folder(identity)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "identity.txt").write_text(identity + "\n", encoding="utf-8")
        self._write_shard(folder, np.asarray(keys, dtype="S32"), vectors)
        shards = self._shards(identity)
        if len(shards) > _MAX_SHARDS:
            self._index.pop(identity, None)
            lookup, all_vectors = self._load(identity)
            all_keys = np.array(list(lookup.keys()), dtype="S32")
            self._write_shard(folder, all_keys, all_vectors[list(lookup.values())])
            for shard in shards:
                shard.unlink(missing_ok=True)
        self._index.pop(identity, None)

    @staticmethod
    def _write_shard(folder: Path, keys: np.ndarray, vectors: np.ndarray) -> None:
        name = f"shard-{uuid.uuid4().hex}.npz"
        tmp = folder / f".tmp-{name}"
        with tmp.open("wb") as f:
            np.savez(f, keys=keys, vectors=vectors)
        os.replace(tmp, folder / name)

    def __len__(self) -> int:
        """Number of cached vectors across every identity."""
        if not self.directory.is_dir():
            return 0
        total = 0
        for folder in self.directory.iterdir():
            ident = folder / "identity.txt"
            if ident.is_file():
                total += len(self._load(ident.read_text(encoding="utf-8").rstrip("\n"))[0])
        return total

    def count(self, identity: str) -> int:
        """Number of cached vectors for one model identity."""
        return len(self._load(identity)[0])

    def clear(self, identity: str | None = None) -> None:
        """Delete cached vectors for one identity, or all of them."""
        folders = (
            [self._folder(identity)]
            if identity is not None
            else (
                [p for p in self.directory.iterdir() if p.is_dir()]
                if self.directory.is_dir()
                else []
            )
        )
        for folder in folders:
            for f in folder.glob("*"):
                f.unlink(missing_ok=True)
            folder.rmdir()
        self._index.clear()
