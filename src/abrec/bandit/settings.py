"""`BanditSettings`: how a Thompson-sampling experiment reallocates traffic (pydantic only)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from typing import Any, Self

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abrec.errors import ConfigError, format_validation_error

#: Slack for the floating-point product ``min_share * n_arms`` (0.1 * 10 is not exactly 1).
_SHARE_TOLERANCE = 1e-12


class BanditSettings(BaseModel):
    """Settings of Beta-Bernoulli Thompson-sampling allocation on the primary metric.

    Attributes:
        min_share: every arm keeps at least this share of new traffic (needs
            ``min_share * n_arms <= 1``; see `check_arms`). A positive floor keeps every
            logged assignment probability positive, which the IPS estimates need.
        burn_in: equal weights until every arm has at least this many units (>= 100).
        update_every_s: seconds between weight recomputations by the service (> 0).
        draws: Monte Carlo posterior draws for P(arm has the highest rate) (>= 1000).
        prior_alpha, prior_beta: the Beta prior of every arm's rate (> 0).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_share: float = Field(default=0.05, ge=0.0, le=0.5, allow_inf_nan=False)
    burn_in: int = Field(default=100, ge=100)
    update_every_s: float = Field(default=10.0, gt=0.0, allow_inf_nan=False)
    draws: int = Field(default=10_000, ge=1000, le=10_000_000)
    prior_alpha: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    prior_beta: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)

    def check_arms(self, n_arms: int) -> None:
        """Raise `ConfigError` unless ``n_arms >= 2`` arms can all get ``min_share``."""
        if isinstance(n_arms, bool) or not isinstance(n_arms, int) or n_arms < 2:
            raise ConfigError(f"a bandit needs at least 2 arms; got {n_arms!r}.")
        if self.min_share * n_arms > 1.0 + _SHARE_TOLERANCE:
            raise ConfigError(
                f"bandit min_share={self.min_share} is impossible for {n_arms} arms "
                f"(min_share * n_arms = {self.min_share * n_arms:.4g} > 1); "
                f"use min_share <= {1.0 / n_arms:.4g}."
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Validate a parsed TOML/JSON table; `ConfigError` names every bad key."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            msg = format_validation_error(exc, what="bandit", hint="see BanditSettings")
            raise ConfigError(f"invalid bandit settings: {msg}") from exc

    @classmethod
    def from_toml(cls, text: str) -> Self:
        """Parse settings from TOML text (the keys of a ``[bandit]`` table)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"bandit settings are not valid TOML: {exc}") from exc
        return cls.from_mapping(data)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Parse settings from a JSON object."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"bandit settings are not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("bandit settings must be a JSON object.")
        return cls.from_mapping(data)

    def to_toml(self) -> str:
        """TOML text that `from_toml` reads back to an equal object."""
        return tomli_w.dumps(self.model_dump())

    def to_json(self) -> str:
        """JSON text that `from_json` reads back to an equal object."""
        return self.model_dump_json()
