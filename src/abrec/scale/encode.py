"""Catalogue encoding on Ray: text shards over a pool of actors, each loading the encoder once.

The result is what `TextEncoder.encode` returns for the same texts: float32 rows in the order
of the texts, L2-normalised when the encoder normalises, read from and written to the
driver's embedding cache. Only the batches differ (each actor encodes its shard), so vectors
agree with a single-process encode to float32 rounding, not bit for bit (`docs/deployment.md`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from abrec.data.types import ItemCatalog
from abrec.embed.cache import text_keys
from abrec.embed.encoder import DEFAULT_MODEL_NAME, TextEncoder, default_model_path
from abrec.errors import ConfigError, DataError
from abrec.scale.session import cluster_cpus, even_ranges, ray_session


@dataclass(frozen=True)
class EncoderSpec:
    """How a worker rebuilds the driver's encoder (without its cache).

    `model` is None for the bundled default model (each node resolves its own installed
    copy); otherwise a model folder that must exist at the same path on every node, or a
    hub name found in each node's Hugging Face cache.
    """

    model: str | None
    batch_size: int
    device: str
    normalize: bool

    @classmethod
    def of(cls, enc: TextEncoder) -> EncoderSpec:
        if enc.name == DEFAULT_MODEL_NAME and enc.path == default_model_path():
            model = None
        else:
            model = str(enc.path) if enc.path is not None else enc.name
        return cls(model, enc.batch_size, enc.device, enc.normalize)

    def build(self) -> TextEncoder:
        return TextEncoder(
            self.model,
            batch_size=self.batch_size,
            device=self.device,
            normalize=self.normalize,
            show_progress=False,
            use_cache=False,
        )


class _EncoderActor:
    """Holds one loaded encoder; encodes the shards it is given."""

    def __init__(self, spec: EncoderSpec) -> None:
        self.encoder = spec.build()
        self.encoder.encode(["warm-up"])  # load the model once, here

    def identity(self) -> str:
        return self.encoder.identity

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)


def encode_catalog_ray(
    texts: Sequence[str] | ItemCatalog,
    encoder: TextEncoder | None = None,
    *,
    shard_size: int = 512,
    workers: int | None = None,
    address: str | None = None,
) -> np.ndarray:
    """Embeddings of `texts` (or of an `ItemCatalog`'s texts) computed by Ray actors.

    Args:
        texts: item texts, or an `ItemCatalog` (its `text` column, in catalogue order).
        encoder: the driver's encoder (default: the bundled all-MiniLM-L6-v2); its settings are
            rebuilt on every worker and its cache (if any) is read first and filled afterwards.
        shard_size: distinct uncached texts per actor call.
        workers: encoder actors (default: the cluster's CPUs, at most one per shard); each
            loads the model once and takes one CPU.
        address: Ray address (`ray_session`); ignored when Ray is already initialised.
    Returns:
        float32 ``[len(texts), dim]``, row i for texts[i].
    Raises:
        ConfigError: a worker loaded a different model than the driver (e.g. another
            version of the folder on that node), or Ray is missing/unreachable.
    """
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if isinstance(texts, ItemCatalog):
        texts = [str(t) for t in texts.text]
    if isinstance(texts, str):
        raise DataError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(f"texts must be strings; positions {bad[:5]} are not")
    enc = encoder or TextEncoder(show_progress=False)
    if not texts:
        return enc.encode([])
    keys = text_keys(texts)
    if enc.cache is not None:
        found, cached = enc.cache.get(enc.identity, keys)
    else:
        found, cached = np.zeros(len(texts), dtype=bool), None
    if found.all():
        assert cached is not None
        return cached
    missing = np.flatnonzero(~found)
    uniq_keys, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
    todo = [texts[i] for i in missing[first]]
    new = _encode_on_ray(EncoderSpec.of(enc), enc.identity, todo, shard_size, workers, address)
    if enc.cache is not None:
        enc.cache.put(enc.identity, uniq_keys, new)
    out = np.empty((len(texts), new.shape[1]), dtype=np.float32)
    if found.any():
        out[found] = cached
    out[missing] = new[inverse.ravel()]
    return out


def _encode_on_ray(
    spec: EncoderSpec,
    identity: str,
    texts: list[str],
    shard_size: int,
    workers: int | None,
    address: str | None,
) -> np.ndarray:
    """Encode distinct texts in shards on an actor pool; rows in the order of `texts`."""
    shards = [texts[lo:hi] for lo, hi in even_ranges(len(texts), shard_size)]
    with ray_session(address) as ray:
        from ray.util import ActorPool

        n = min(len(shards), workers or cluster_cpus(ray))
        actor_cls = ray.remote(num_cpus=1)(_EncoderActor)
        actors = [actor_cls.remote(spec) for _ in range(n)]
        try:
            ids = ray.get([a.identity.remote() for a in actors])
            wrong = sorted({i for i in ids if i != identity})
            if wrong:
                raise ConfigError(
                    f"Ray workers loaded {wrong}, the driver has {identity}; install the same "
                    "model at the same path on every node"
                )
            pool = ActorPool(actors)
            parts = list(pool.map(lambda a, shard: a.encode.remote(shard), shards))
        finally:
            for a in actors:
                ray.kill(a)
    return np.concatenate(parts).astype(np.float32, copy=False)
