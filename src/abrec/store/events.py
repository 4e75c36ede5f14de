"""The event record and the per-variant sufficient statistics read back from the store."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVENT_TYPES: tuple[str, ...] = ("exposure", "click", "conversion", "covariate")


def _now() -> datetime:
    return datetime.now(UTC)


def printable_id(s: str) -> str:
    """The one rule for ids (event, experiment, variant, unit): printable characters only."""
    if not s.isprintable():
        raise ValueError("must contain only printable characters")
    return s


class Event(BaseModel):
    """One append-only event; ``event_id`` is the client's idempotency key.

    ``type`` is ``exposure``, ``click``, ``conversion``, ``covariate`` (a unit's
    pre-experiment metric in ``value``, used by CUPED) or another lower-case word.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(min_length=1, max_length=128)
    ts: datetime = Field(default_factory=_now)
    experiment: str = Field(min_length=1, max_length=128)
    variant: str = Field(min_length=1, max_length=128)
    unit_id: str = Field(min_length=1, max_length=256)
    type: str = Field(pattern=r"^[a-z][a-z_]{0,31}$")
    item_id: str | None = Field(default=None, min_length=1, max_length=256)
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    value: float | None = None
    request_id: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("ts")
    @classmethod
    def _aware(cls, ts: datetime) -> datetime:
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError("ts must be timezone-aware, e.g. '2024-05-01T12:00:00Z'")
        return ts.astimezone(UTC)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value

    @field_validator("event_id", "experiment", "variant", "unit_id")
    @classmethod
    def _printable(cls, s: str) -> str:
        return printable_id(s)

    @model_validator(mode="after")
    def _covariate_value(self) -> Self:
        if self.type == "covariate" and self.value is None:
            raise ValueError("a covariate event needs its pre-experiment metric in 'value'")
        return self


@dataclass(frozen=True)
class VariantSummary:
    """Per-variant totals and per-unit sufficient statistics, computed in SQL.

    Unit-level statistics cover exposed units (≥1 exposure). ``c`` = clicks per unit,
    ``e`` = exposures per unit, ``v`` = conversions per unit, ``x`` = covariate; the
    ``cov_*`` sums of clicks are restricted to units that have a covariate.
    """

    variant: str
    n_units: int
    exposures: int
    clicks: int
    conversions: int
    sum_clicks: float
    sum_sq_clicks: float
    sum_exposures: float
    sum_sq_exposures: float
    sum_clicks_exposures: float
    sum_conversions: float
    sum_sq_conversions: float
    n_covariate: int = 0
    sum_x: float = 0.0
    sum_sq_x: float = 0.0
    sum_x_clicks: float = 0.0
    sum_x_exposures: float = 0.0
    cov_sum_clicks: float = 0.0
    cov_sum_sq_clicks: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)
