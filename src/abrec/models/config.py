"""Typed, validated hyper-parameters: one pydantic config class per model kind.

Every model is built from its config (`Model.from_config(cfg)` or `Model(**params)`) and gives
it back (`model.get_config()`); `params()` is the config's JSON dump. A bad value raises
`ConfigError` naming the key, before any numerical code runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abrec.data.splits import ValidationKind
from abrec.errors import ConfigError, format_validation_error


class RecommenderConfig(BaseModel):
    """Base of every model config: unknown keys, NaN and infinities are rejected; immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class InnerValidationConfig(RecommenderConfig):
    """Config of a model that tunes itself on a validation part carved from its training data.

    Attributes:
        validation: how the part is carved (`abrec.data.splits.validation_split`). The offline
            runner sets it from the evaluation protocol when the model config leaves it out, so
            a model tunes for the task the protocol measures.
        validation_fraction: share of each user's training events held out (temporal, random).
    """

    validation: ValidationKind = "temporal"
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)


C = TypeVar("C", bound=RecommenderConfig)


def validate_config(config_class: type[C], params: Mapping[str, Any], what: str) -> C:
    """`config_class` validated from `params`, or ConfigError naming each bad key.

    Args:
        config_class: the model's config class.
        params: raw parameters (from TOML/JSON or keyword arguments).
        what: the model kind, used in the message.
    """
    try:
        return config_class.model_validate(dict(params))
    except ValidationError as exc:
        detail = format_validation_error(exc, what=what, hint=f"see {config_class.__name__}")
        raise ConfigError(f"bad parameters for model kind {what!r}: {detail}") from None
