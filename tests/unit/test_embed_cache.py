"""EmbeddingCache: round trip, identity isolation, shard merging, default location."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abrec.embed import EmbeddingCache, default_embedding_cache_dir, text_keys


def test_text_keys_are_sha256_digests() -> None:
    import hashlib

    keys = text_keys(["a", "é", "a"])
    assert keys.dtype == np.dtype("S32") and len(keys) == 3
    assert keys[0] == hashlib.sha256(b"a").digest()
    assert keys[1] == hashlib.sha256("é".encode()).digest()
    assert keys[0] == keys[2]


def test_round_trip_and_partial_hits(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.put("model-a@1", text_keys(["x", "y", "z"]), vecs)
    found, got = EmbeddingCache(tmp_path).get("model-a@1", text_keys(["z", "w", "x"]))
    assert found.tolist() == [True, False, True]
    np.testing.assert_array_equal(got, vecs[[2, 0]])
    assert cache.count("model-a@1") == 3 and len(cache) == 3


def test_identities_never_share_entries(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    cache.put("model/a", text_keys(["x"]), np.ones((1, 2)))
    found, _ = cache.get("model_a", text_keys(["x"]))  # same slug text, different identity
    assert not found.any()
    cache.clear("model/a")
    assert cache.count("model/a") == 0


def test_many_puts_are_merged(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    for k in range(20):
        cache.put("m", text_keys([f"t{k}"]), np.full((1, 3), k, dtype=np.float32))
    shards = list(next(tmp_path.iterdir()).glob("shard-*.npz"))
    assert len(shards) <= 17
    found, got = EmbeddingCache(tmp_path).get("m", text_keys([f"t{k}" for k in range(20)]))
    assert found.all()
    np.testing.assert_array_equal(got[:, 0], np.arange(20))


def test_put_rejects_misaligned_vectors(tmp_path: Path) -> None:
    from abrec.errors import DataError

    with pytest.raises(DataError):
        EmbeddingCache(tmp_path).put("m", text_keys(["a", "b"]), np.ones((1, 2)))


def test_default_dir_follows_abrec_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ABREC_CACHE", str(tmp_path))
    assert default_embedding_cache_dir() == tmp_path / "embeddings"
    assert EmbeddingCache().directory == tmp_path / "embeddings"
    monkeypatch.delenv("ABREC_CACHE")
    assert default_embedding_cache_dir() == Path.home() / ".cache" / "abrec" / "embeddings"
