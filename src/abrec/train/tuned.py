"""A fine-tuned encoder for a given training set, trained once and reused (content-addressed).

Models that fine-tune the text encoder inside `fit` (the two-tower, the re-ranker with
`finetune`) call `tuned_model_dir`: the key is a hash of everything that decides the result
(the training interactions, the item texts, the base model's files, the training config and
the validation split), so a second fit on the same data reuses the folder instead of training
again, and any change (another protocol's training period, another seed) trains anew. Nothing
outside the training interactions given is read, so a model fitted on a protocol's training
period never sees its test period.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from abrec.data.splits import PROTOCOL_VALIDATION
from abrec.data.types import Interactions, ItemCatalog
from abrec.train.config import TrainConfig
from abrec.train.modeling import base_fingerprint

DONE = "done.json"
"""Written last into a finished folder (the learning-curve summary); its absence means retrain."""


def default_tuned_dir() -> Path:
    """`$ABREC_CACHE/finetune` or `~/.cache/abrec/finetune`."""
    env = os.environ.get("ABREC_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "abrec"
    return base / "finetune"


def _digest_array(h: Any, a: np.ndarray | None) -> None:
    if a is None:
        h.update(b"none")
        return
    arr = np.ascontiguousarray(a)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes() if arr.dtype != object else "\x1f".join(map(str, arr)).encode())


def training_key(train: Interactions, items: ItemCatalog, cfg: TrainConfig, validation: str) -> str:
    """sha256 over the interactions, item texts, base model files, config and split kind."""
    h = hashlib.sha256()
    for a in (train.user_idx, train.item_idx, train.ratings, train.timestamps):
        _digest_array(h, a)
    h.update("\x1f".join(str(t) for t in items.text).encode("utf-8"))
    h.update(base_fingerprint(cfg.model).encode())
    h.update(json.dumps(cfg.resume_key(), sort_keys=True).encode())
    h.update(PROTOCOL_VALIDATION.get(validation, validation).encode())
    return h.hexdigest()


def cached_model_dir(
    train: Interactions,
    items: ItemCatalog,
    cfg: TrainConfig,
    *,
    validation: str,
    cache_dir: str | Path | None = None,
) -> Path | None:
    """The finished folder `tuned_model_dir` would return without training, or None."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_tuned_dir()
    out = root / training_key(train, items, cfg, validation)[:24]
    return out / "model" if (out / DONE).is_file() else None


def tuned_model_dir(
    train: Interactions,
    items: ItemCatalog,
    cfg: TrainConfig,
    *,
    validation: str,
    cache_dir: str | Path | None = None,
    quiet: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The folder of an encoder fine-tuned on `train` (trained now unless already cached).

    Args:
        train: the training interactions (the trainer carves its validation part from them).
        items: the catalogue, aligned with the interactions' item columns.
        cfg: the training config (`output_dir` is ignored: the cache decides where).
        validation: the validation split kind or protocol name (`validation_split`).
        cache_dir: cache root (default `default_tuned_dir()`).
    Returns:
        (model folder, the run's summary: learning curve, best epoch, timings).
    """
    from abrec.train.run import train_encoder

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_tuned_dir()
    out = root / training_key(train, items, cfg, validation)[:24]
    done = out / DONE
    if done.is_file():  # the same as cached_model_dir, keeping the summary
        summary: dict[str, Any] = json.loads(done.read_text())
        return out / "model", summary
    out.mkdir(parents=True, exist_ok=True)
    result = train_encoder(
        train,
        items,
        cfg.model_copy(update={"output_dir": str(out)}),
        protocol=validation,
        resume=(out / "checkpoints").is_dir(),
        quiet=quiet,
        log=log,
    )
    summary = result.summary()
    tmp = out / (DONE + ".tmp")
    tmp.write_text(json.dumps(summary, default=str))
    tmp.replace(done)
    return result.model_dir, summary


__all__ = ["DONE", "cached_model_dir", "default_tuned_dir", "training_key", "tuned_model_dir"]
