"""`TrainConfig`: every knob of the contrastive fine-tuning run, validated by pydantic.

Unknown keys, NaN/inf and out-of-range values raise `ConfigError` naming the key
(`parse_train_config`). The overfitting controls are `weight_decay`, `freeze_layers`, `lora`,
`max_grad_norm`, `dropout` and early stopping (`patience`, `min_delta`, `restore_best` on the
validation `metric`); docs/training.md says what each one does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from abrec.data.splits import RELEVANCE_THRESHOLD
from abrec.errors import ConfigError, format_validation_error

#: Validation metrics early stopping can watch (computed on 1 positive + `n_negatives` items).
ValidationMetric = Literal["ndcg@10", "recall@10"]


def check_device(value: str) -> str:
    """A device setting normalised (auto, cpu, cuda, cuda:N, mps); ValueError otherwise."""
    v = value.strip().lower()
    head, _, index = v.partition(":")
    if v in ("auto", "cpu", "cuda", "mps") or (head == "cuda" and index.isdigit()):
        return v
    raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {value!r}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoraSettings(_Strict):
    """Low-rank adapters (via `peft`) on the encoder's attention projections.

    Only the adapters train; the base weights stay bit-identical. The adapters are merged into
    the weights when the tuned model is saved, so it loads as a plain sentence-transformers model.
    """

    r: PositiveInt = Field(default=8, description="adapter rank")
    alpha: PositiveInt = Field(default=16, description="scaling numerator (alpha / r)")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        description="names of the Linear layers that get adapters (BERT: query, key, value, dense)",
    )


class TrainConfig(_Strict):
    """Contrastive two-tower fine-tuning of a sentence-transformers encoder.

    Anchor = titles of a user's last `history_len` liked items, positive = the next liked item's
    text, in-batch negatives (`MultipleNegativesRankingLoss`); both towers share the weights.
    """

    model: str | None = Field(
        default=None, description="base model: local folder or name; None = bundled MiniLM"
    )
    epochs: PositiveInt = 3
    batch_size: int = Field(default=32, ge=2, description="pairs per step (in-batch negatives)")
    learning_rate: PositiveFloat = 2e-5
    warmup_ratio: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="share of steps warming up"
    )
    weight_decay: NonNegativeFloat = Field(
        default=0.01, description="AdamW decoupled decay (not on biases and LayerNorm weights)"
    )
    freeze_layers: PositiveInt | None = Field(
        default=None,
        description="train only the top N transformer layers; embeddings and lower layers frozen",
    )
    lora: LoraSettings | None = None
    max_grad_norm: PositiveFloat | None = Field(
        default=1.0, description="clip the total gradient norm to this; None = no clipping"
    )
    dropout: float | None = Field(
        default=None, ge=0.0, lt=1.0, description="hidden and attention dropout; None = model's"
    )
    patience: PositiveInt | None = Field(
        default=2, description="stop after this many epochs without improvement; None = never"
    )
    min_delta: NonNegativeFloat = Field(default=0.0, description="smallest improvement that counts")
    restore_best: bool = Field(default=True, description="save the best epoch's weights, not last")
    metric: ValidationMetric = "ndcg@10"
    validate_untuned: bool = Field(
        default=True, description="score the base model as epoch 0 (restore-best may keep it)"
    )
    history_len: PositiveInt = Field(default=5, description="liked items in the anchor text")
    max_examples_per_user: PositiveInt | None = Field(
        default=None, description="keep each user's most recent N training pairs; None = all"
    )
    max_seq_length: PositiveInt = Field(default=128, le=512, description="tokens per text")
    relevance_threshold: float = Field(
        default=RELEVANCE_THRESHOLD, description="a rating >= this is a like"
    )
    val_fraction: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="temporal/random: share of training events held out",
    )
    val_users: PositiveInt | None = Field(
        default=300, description="validation users (a seeded sample); None = all"
    )
    n_negatives: PositiveInt = Field(default=99, description="sampled items ranked per user")
    negative_pool: PositiveInt | None = Field(
        default=2000,
        description="negatives come from a seeded pool of this many catalogue items (bounds the "
        "items encoded per validation); None = the whole catalogue",
    )
    seed: int = 42
    device: str = Field(default="auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    cpu_threads: PositiveInt | None = Field(
        default=None, description="torch CPU threads while training; None = torch's default"
    )
    mixed_precision: bool = Field(default=True, description="bf16/fp16 autocast on CUDA only")
    output_dir: str = "runs/finetune"
    save_checkpoints: bool = Field(default=True, description="a checkpoint after every epoch")
    keep_checkpoints: PositiveInt = Field(default=2, description="most recent checkpoints kept")
    encode_batch_size: PositiveInt = Field(default=128, description="batch size for validation")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)

    @model_validator(mode="after")
    def _exclusive(self) -> TrainConfig:
        if self.lora is not None and self.freeze_layers is not None:
            raise ValueError(
                "lora and freeze_layers are alternatives (LoRA already freezes every base "
                "weight); set one of them"
            )
        return self

    def resume_key(self) -> dict[str, Any]:
        """The settings a checkpoint must share to be resumed (all but where and on what)."""
        return self.model_dump(
            mode="json",
            exclude={
                "output_dir",
                "device",
                "encode_batch_size",
                "keep_checkpoints",
                "cpu_threads",
            },
        )


def parse_train_config(data: Mapping[str, Any], source: str = "[train]") -> TrainConfig:
    """Validate a `[train]` mapping; raises `ConfigError` naming every bad key."""
    try:
        return TrainConfig.model_validate(dict(data))
    except ValidationError as exc:
        detail = format_validation_error(
            exc, sep="\n  - ", what="(train)", hint="see examples/finetune.toml"
        )
        raise ConfigError(f"invalid {source}:\n  - {detail}") from None


__all__ = [
    "LoraSettings",
    "TrainConfig",
    "ValidationMetric",
    "check_device",
    "parse_train_config",
]
