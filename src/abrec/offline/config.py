"""The offline run's TOML config: pydantic schema, loading (with path resolution) and dumping.

Unknown keys and bad values raise `ConfigError` naming every offending key; a run writes its
resolved config back as TOML (`config_to_toml`), which `load_config` reads again.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from abrec.data.splits import PROTOCOL_NAME, RELEVANCE_THRESHOLD
from abrec.errors import ConfigError, format_validation_error

ProtocolName = Literal["ml-small-temporal-v1", "temporal", "leave-last-one-out", "random"]

#: Metric names accepted in `evaluation.primary_metric` (as `<metric>@k`).
PRIMARY_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "novelty", "diversity")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Where the data comes from: MovieLens latest-small, or your own files."""

    kind: Literal["movielens", "generic"] = "movielens"
    path: str | None = Field(
        default=None, description="movielens: folder holding ml-latest-small (default ABREC_DATA)"
    )
    n_tags: int = Field(default=5, ge=0, description="movielens: tags per movie in the item text")
    interactions: str | None = Field(default=None, description="generic: interactions CSV/Parquet")
    items: str | None = Field(default=None, description="generic: items CSV/Parquet")
    text_columns: list[str] | None = Field(default=None, description="generic: item text columns")

    @model_validator(mode="after")
    def _generic_needs_files(self) -> DatasetConfig:
        if self.kind == "generic" and (not self.interactions or not self.items):
            raise ValueError("kind = 'generic' needs both `interactions` and `items` file paths")
        return self


class ProtocolConfig(_Strict):
    """How train/test are split and which test events are relevant."""

    name: ProtocolName = PROTOCOL_NAME
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    relevance_threshold: float = RELEVANCE_THRESHOLD
    seed: int | None = Field(default=None, description="random split seed (default: run seed)")
    evaluate_on: Literal["test", "validation"] = Field(
        default="test",
        description="validation: evaluate on a split carved from the training period only "
        "(same kind as the protocol), for choosing models and hyper-parameters",
    )


class EncoderConfig(_Strict):
    """The language model that reads item texts."""

    model: str | None = Field(default=None, description="local model dir or name; None = MiniLM")
    batch_size: int = Field(default=64, ge=1)
    device: str = "cpu"
    cache_dir: str | None = None
    use_cache: bool = True
    finetune: dict[str, Any] | None = Field(
        default=None,
        description="[train] keys (abrec.train.TrainConfig): fine-tune `model` on the split's "
        "training period first (cached by content) and give every language-model model the "
        "tuned encoder; validation carved by the protocol's kind, seed = the run's seed",
    )

    @field_validator("finetune")
    @classmethod
    def _finetune(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from abrec.train.config import parse_train_config

            owned = sorted(set(value) & {"model", "output_dir"})
            if owned:
                raise ValueError(f"set {owned} outside [encoder.finetune] (encoder.model)")
            parse_train_config(value, "[encoder.finetune]")
        return value


class ModelConfig(_Strict):
    """One model to train: display name, registry kind and constructor parameters."""

    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_params(self) -> ModelConfig:
        """The kind is registered and its params pass the kind's own config class."""
        from abrec.models.registry import config_class

        try:
            klass = config_class(self.kind)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        try:
            klass.model_validate(self.params)
        except ValidationError as exc:
            detail = format_validation_error(exc, what="params", hint=f"see {klass.__name__}")
            raise ValueError(f"model {self.name!r} (kind {self.kind!r}): {detail}") from None
        return self


class EvaluationConfig(_Strict):
    """Metrics, uncertainty and the baseline every model is compared with."""

    baseline: str | None = Field(default=None, description="model name; default the first")
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20], min_length=1)
    primary_metric: str = "ndcg@10"
    primary_test: Literal["ttest", "wilcoxon", "permutation"] = "permutation"
    n_bootstrap: int = Field(default=2000, ge=100)
    n_permutations: int = Field(default=10_000, ge=100)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    batch_size: int = Field(default=256, ge=1)
    diversity: bool = Field(default=True, description="intra-list diversity from the encoder")
    auc: bool = True
    champion: str | None = Field(
        default=None,
        description="the language-model model chosen on the validation split; the head-to-head "
        "compares it with every collaborative model (default: the best LM model on this split)",
    )

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, ks: list[int]) -> list[int]:
        if any(k < 1 for k in ks):
            raise ValueError(f"every k must be >= 1, got {ks}")
        return sorted(set(ks))


class RunConfig(_Strict):
    """A whole offline evaluation run (the TOML file)."""

    name: str = "run"
    seed: int = 42
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    models: list[ModelConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_models(self) -> RunConfig:
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique; repeated: {dup}")
        base = self.evaluation.baseline
        if base is not None and base not in names:
            raise ValueError(
                f"evaluation.baseline {base!r} is not a model name; pick one of {names}"
            )
        champ = self.evaluation.champion
        if champ is not None and champ not in names:
            raise ValueError(
                f"evaluation.champion {champ!r} is not a model name; pick one of {names}"
            )
        metric, _, k = self.evaluation.primary_metric.partition("@")
        if metric not in PRIMARY_METRICS or not k.isdigit() or int(k) not in self.evaluation.ks:
            raise ValueError(
                f"evaluation.primary_metric {self.evaluation.primary_metric!r} must be "
                f"'<metric>@k' with metric in {list(PRIMARY_METRICS)} and k in evaluation.ks "
                f"{self.evaluation.ks}"
            )
        return self

    def with_evaluate_on(self, on: str) -> RunConfig:
        """A copy evaluated on `on` ("test" or "validation"); ConfigError for anything else."""
        if on not in ("test", "validation"):
            raise ConfigError(f"--on must be 'test' or 'validation', got {on!r}")
        protocol = self.protocol.model_copy(update={"evaluate_on": on})
        return self.model_copy(update={"protocol": protocol})

    @property
    def baseline(self) -> str:
        """The baseline model name (the first model unless set)."""
        return self.evaluation.baseline or self.models[0].name


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> RunConfig:
    """Validate a config mapping; raises `ConfigError` naming every bad key."""
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        detail = format_validation_error(
            exc, sep="\n  - ", what="(top level)", hint="see examples/movielens.toml"
        )
        raise ConfigError(f"invalid config {source}:\n  - {detail}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run config; relative paths resolve against its folder."""
    p = Path(path)
    return resolve_paths(parse_config(read_toml(p), str(p)), p.parent)


def read_toml(path: Path, example: str = "path/to/file.toml") -> dict[str, Any]:
    """The TOML document at `path`; ConfigError when it is missing or not TOML."""
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass --config {example}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """Make relative dataset/encoder paths relative to the config file's folder."""

    def fix(value: str | None, must_exist: bool = False) -> str | None:
        if value is None:
            return None
        q = Path(value).expanduser()
        if q.is_absolute():
            return str(q)
        cand = (base / q).resolve()
        return str(cand) if (cand.exists() or must_exist) else value

    ds = cfg.dataset.model_copy(
        update={
            "path": fix(cfg.dataset.path),
            "interactions": fix(cfg.dataset.interactions, True),
            "items": fix(cfg.dataset.items, True),
        }
    )
    enc = cfg.encoder.model_copy(update={"model": fix(cfg.encoder.model)})
    return cfg.model_copy(update={"dataset": ds, "encoder": enc})


def config_to_toml(cfg: RunConfig) -> str:
    """Serialise a resolved config as TOML with `tomli_w` (None values are omitted)."""
    data = cfg.model_dump(mode="json", exclude_none=True)
    try:
        return tomli_w.dumps(data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot write the resolved config as TOML: {exc}") from None


__all__ = [
    "PRIMARY_METRICS",
    "DatasetConfig",
    "EncoderConfig",
    "EvaluationConfig",
    "ModelConfig",
    "ProtocolConfig",
    "RunConfig",
    "config_to_toml",
    "load_config",
    "parse_config",
    "read_toml",
]
