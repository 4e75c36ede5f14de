"""Fine-tuned text vectors inside `fit`: the config every such model shares and one entry point.

A model whose config derives from `TunedEncoderConfig` and sets `finetune` (fields of
`abrec.train.TrainConfig`) reads item texts through an encoder fine-tuned contrastively on the
training interactions `fit` is given (`abrec.train.tuned`: trained once per training set and
config, cached by content). The trainer carves the model's own validation part (same kind,
share and seed), so the tuned encoder never trains on the events the model validates on, and a
model fitted on a protocol's training period never sees that protocol's test period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import NonNegativeInt

from abrec.data.types import Interactions, ItemCatalog
from abrec.models.config import InnerValidationConfig

if TYPE_CHECKING:
    from abrec.embed import TextEncoder
    from abrec.train.config import TrainConfig

_OWNED = frozenset(
    {"model", "history_len", "relevance_threshold", "val_fraction", "seed", "output_dir"}
)
"""`finetune` keys the model config decides itself (they would otherwise disagree with it)."""


class TunedEncoderConfig(InnerValidationConfig):
    """Config fields of a model that can fine-tune its text encoder inside `fit`.

    Attributes:
        finetune: `abrec.train.TrainConfig` fields; None reads `model` (or the bundled MiniLM)
            as is. The keys the model config owns (model, seed, the validation share, ...)
            are rejected here.
        seed: seeds the fine-tuning and a random validation split.
        cache_dir: where fine-tuned encoders are kept (None: `$ABREC_CACHE/finetune`).
    """

    finetune: dict[str, Any] | None = None
    seed: NonNegativeInt = 42
    cache_dir: str | None = None


def finetune_config(cfg: Any, what: str) -> TrainConfig | None:
    """`cfg.finetune` as a validated `TrainConfig`, with the keys the model config owns.

    `cfg` is a model config with `finetune`, `model`, `seed`, `validation_fraction` and
    optionally `history_len` / `relevance_threshold` (the two-tower's and the re-ranker's).
    The trainer then carves exactly the validation part the model carves (same kind, share and
    seed), so the tuned encoder never trains on the model's own validation events.
    """
    if cfg.finetune is None:
        return None
    from abrec.errors import ConfigError
    from abrec.train.config import parse_train_config

    owned = sorted(set(cfg.finetune) & _OWNED)
    if owned:
        raise ConfigError(
            f"{what} finetune: {', '.join(owned)} are set by the model's own config "
            "(model, history_len, relevance_threshold, validation_fraction, seed, cache_dir)"
        )
    tcfg = parse_train_config({**cfg.finetune, "model": cfg.model}, f"{what} finetune")
    update: dict[str, Any] = {
        "val_fraction": cfg.validation_fraction,
        "seed": cfg.seed,
        "save_checkpoints": True,
    }
    for key in ("history_len", "relevance_threshold"):
        if hasattr(cfg, key):
            update[key] = getattr(cfg, key)
    return tcfg.model_copy(update=update)


def tuned_text_encoder(
    cfg: Any, train: Interactions, items: ItemCatalog, what: str
) -> tuple[TextEncoder | None, dict[str, Any] | None]:
    """(encoder fine-tuned on `train`, the run's summary), or (None, None) without `finetune`."""
    tcfg = finetune_config(cfg, what)
    if tcfg is None:
        return None, None
    from abrec.embed import TextEncoder
    from abrec.train.tuned import tuned_model_dir

    folder, summary = tuned_model_dir(
        train, items, tcfg, validation=cfg.validation, cache_dir=cfg.cache_dir
    )
    return TextEncoder(folder, show_progress=False), summary


def tuned_encoder_cached(cfg: Any, train: Interactions, items: ItemCatalog, what: str) -> bool:
    """Whether `fit` on `train` would find its fine-tuned encoder cached (False without
    `finetune`), so a caller can avoid a long training run or say it will happen."""
    tcfg = finetune_config(cfg, what)
    if tcfg is None:
        return False
    from abrec.train.tuned import cached_model_dir

    found = cached_model_dir(train, items, tcfg, validation=cfg.validation, cache_dir=cfg.cache_dir)
    return found is not None


__all__ = ["TunedEncoderConfig", "finetune_config", "tuned_encoder_cached", "tuned_text_encoder"]
