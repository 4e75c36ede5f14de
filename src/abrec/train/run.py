"""One call from a protocol's training interactions to a tuned model folder."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from abrec.data.types import Interactions, ItemCatalog
from abrec.train.config import TrainConfig
from abrec.train.data import build_training_data
from abrec.train.trainer import EpochCallback, Trainer, TrainResult


def train_encoder(
    train: Interactions,
    items: ItemCatalog,
    cfg: TrainConfig,
    *,
    protocol: str,
    resume: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    timings: Mapping[str, float] | None = None,
) -> TrainResult:
    """Build the pairs and validation set from `train` (never a test period), then fine-tune.

    Args:
        train: the protocol's training interactions (`ProtocolSplit.train`).
        items: the item catalogue (texts), aligned with the interactions' columns.
        cfg: the training config.
        protocol: the protocol's name; the validation split follows its kind.
        resume: continue from the last checkpoint in `cfg.output_dir`.
        timings: seconds the caller already spent (e.g. `load_data_s`), reported with the run.
    """
    t0 = time.perf_counter()
    data = build_training_data(train, items, cfg, protocol)
    trainer = Trainer(
        cfg,
        data,
        quiet=quiet,
        log=log,
        callbacks=callbacks,
        timings={**(timings or {}), "data_s": time.perf_counter() - t0},
    )
    return trainer.fit(resume=resume)


__all__ = ["train_encoder"]
