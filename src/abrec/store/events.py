"""The event record and the per-unit columns the store aggregates."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVENT_TYPES: tuple[str, ...] = ("exposure", "click", "conversion", "covariate")
#: Per-unit columns the store aggregates (see :meth:`abrec.store.EventStore.aggregate`).
UNIT_COLUMNS: tuple[str, ...] = ("exposures", "clicks", "conversions", "covariate")


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
