"""The event record and the per-unit columns the store aggregates."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVENT_TYPES: tuple[str, ...] = ("exposure", "click", "conversion", "covariate")
#: Per-unit columns the store aggregates (see :meth:`abrec.store.EventStore.aggregate`).
UNIT_COLUMNS: tuple[str, ...] = ("exposures", "clicks", "conversions", "covariate")

#: Longest id any field accepts (fields may set a lower bound, e.g. 128 for experiment ids).
MAX_ID_LENGTH = 256

#: Event timestamps must lie in [TS_MIN, TS_MAX) (UTC). The bounds keep every timestamp
#: representable after conversion to UTC and on both store backends, and far from the
#: datetime limits (year 1 / 9999) where offsets overflow.
TS_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TS_MAX = datetime(9000, 1, 1, tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def printable_id(s: str) -> str:
    """The one rule for every id (event, request, experiment, variant, unit, item, model).

    An id is a non-blank string of at most `MAX_ID_LENGTH` printable characters: no
    control characters (Unicode category Cc, NUL included), no format characters such as
    bidi/RTL marks or zero-width spaces (Cf), no lone surrogates (Cs), no private-use or
    unassigned code points (Co, Cn), no line or paragraph separators (Zl, Zp) and no
    whitespace other than the ASCII space (e.g. no-break spaces), i.e. `str.isprintable()`.
    The message names the offending code point but never echoes the id itself.

    Raises:
        ValueError: when ``s`` breaks the rule.
    """
    if not isinstance(s, str):
        raise ValueError("must be a string")
    if not s or not s.strip(" "):
        raise ValueError("must not be empty or blank")
    if len(s) > MAX_ID_LENGTH:
        raise ValueError(f"must be at most {MAX_ID_LENGTH} characters")
    if not s.isprintable():
        pos, ch = next((i, c) for i, c in enumerate(s) if not c.isprintable())
        raise ValueError(
            f"must contain only printable characters (U+{ord(ch):04X}, category "
            f"{unicodedata.category(ch)}, at position {pos})"
        )
    return s


class Event(BaseModel):
    """One append-only event; ``event_id`` is the client's idempotency key.

    ``type`` is ``exposure``, ``click``, ``conversion``, ``covariate`` (a unit's
    pre-experiment metric in ``value``, used by CUPED) or another lower-case word.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, protected_namespaces=())

    event_id: str = Field(min_length=1, max_length=128)
    ts: datetime = Field(
        default_factory=_now,
        strict=False,
        description="ISO 8601 with a UTC offset, between 1970-01-01 and 9000-01-01 (UTC)",
    )
    experiment: str = Field(min_length=1, max_length=128)
    variant: str = Field(min_length=1, max_length=128)
    unit_id: str = Field(min_length=1, max_length=256)
    type: str = Field(pattern=r"^[a-z][a-z_]{0,31}$")
    item_id: str | None = Field(default=None, min_length=1, max_length=256)
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    value: float | None = None
    request_id: str | None = Field(default=None, min_length=1, max_length=128)
    propensity: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="exposures: the probability that the serving policy showed this item at "
        "this position (1 for a deterministic ranking)",
    )
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="exposures of interleaving experiments: what the credit rule needs (the "
        "contributing ranker, or the item's ranks in each ranker)",
    )

    model_version: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="exposures: the version of the model bundle that served the list (set by "
        "the service when it serves from a model registry)",
    )

    score: float | None = Field(
        default=None,
        description="exposures: the serving model's score of this item for this unit (logged "
        "by the service; the drift monitor compares its distribution with training)",
    )

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_text(cls, ts: Any) -> Any:
        if not isinstance(ts, str | datetime):
            raise ValueError("ts must be an ISO 8601 string, e.g. '2024-05-01T12:00:00Z'")
        return ts

    @field_validator("ts")
    @classmethod
    def _aware(cls, ts: datetime) -> datetime:
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError("ts must be timezone-aware, e.g. '2024-05-01T12:00:00Z'")
        try:
            utc = ts.astimezone(UTC)
        except OverflowError:  # near year 1 or 9999 the offset leaves the datetime range
            utc = None
        if utc is None or not TS_MIN <= utc < TS_MAX:
            raise ValueError(
                f"ts must lie between {TS_MIN.date().isoformat()} and "
                f"{TS_MAX.date().isoformat()} (UTC)"
            )
        return utc

    @field_validator("value", "propensity", "score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator(
        "event_id",
        "experiment",
        "variant",
        "unit_id",
        "item_id",
        "request_id",
        "source",
        "model_version",
    )
    @classmethod
    def _printable(cls, s: str | None) -> str | None:
        return None if s is None else printable_id(s)

    @model_validator(mode="after")
    def _covariate_value(self) -> Self:
        if self.type == "covariate" and self.value is None:
            raise ValueError("a covariate event needs its pre-experiment metric in 'value'")
        return self


class ExposureRow(dict[str, Any]):
    """An exposure's columns, equal to ``Event.model_dump()`` of the same event, built by
    `exposure_rows` under `Event`'s rules. The store and the `BatchWriter` take it where
    they take an unverified `Event` (the service's own exposures), without the cost of a
    pydantic object per item."""

    @property
    def event_id(self) -> str:
        event_id: str = self["event_id"]
        return event_id


def event_row(event: Event | ExposureRow) -> dict[str, Any]:
    """The event's columns, equal to ``event.model_dump()`` (every field is a plain value:
    str, int, float, datetime or None), read from the validated instance without the
    serializer's per-call cost."""
    if isinstance(event, ExposureRow):
        return dict(event)
    return dict(event.__dict__)


def _check_score(score: float | None) -> None:
    """Raise ValidationError unless ``score`` passes `Event`'s rule (None or finite)."""
    if score is not None and not math.isfinite(score):
        Event(event_id="x", experiment="x", variant="x", unit_id="x", type="exposure", score=score)


@lru_cache(maxsize=65_536)
def _check_item_fields(item_id: str, propensity: float | None, source: str | None) -> None:
    """Raise ValidationError unless these per-item exposure fields pass `Event`'s rules
    (checked once per distinct triple: items recur across requests)."""
    Event(
        event_id="x",
        experiment="x",
        variant="x",
        unit_id="x",
        type="exposure",
        item_id=item_id,
        propensity=propensity,
        source=source,
    )


def exposure_rows(
    *,
    request_id: str,
    experiment: str,
    variant: str,
    unit_id: str,
    item_ids: Sequence[str],
    propensities: Sequence[float | None],
    sources: Sequence[str | None],
    scores: Sequence[float | None] | None = None,
    model_version: str | None = None,
    ts: datetime | None = None,
) -> list[ExposureRow]:
    """One exposure per item, ``event_id`` ``f"{request_id}:{position}"``, under the same
    validation as building each `Event` (a `ValidationError` otherwise), at a fraction of
    the cost: the first and the last event (the longest ``event_id``) are validated in
    full, so the fields shared by all are known valid, and each other item's own fields
    (item, propensity, source) are checked against `Event`'s rules once per distinct
    value (cached). Every exposure of one request carries the same ``ts``. A new column
    is a field of `Event` and, when the service sets it, one keyword here.
    """
    n = len(item_ids)
    scores = [None] * n if scores is None else scores
    if not (len(propensities) == len(sources) == len(scores) == n):
        raise ValueError(
            f"{n} items, {len(propensities)} propensities, {len(sources)} sources and "
            f"{len(scores)} scores: give one of each per item"
        )
    if n == 0:
        return []
    head = event_row(
        Event(
            event_id=f"{request_id}:0",
            ts=ts if ts is not None else _now(),
            experiment=experiment,
            variant=variant,
            unit_id=unit_id,
            type="exposure",
            item_id=item_ids[0],
            position=0,
            request_id=request_id,
            propensity=propensities[0],
            source=sources[0],
            score=scores[0],
            model_version=model_version,
        )
    )
    out = [ExposureRow(head)]
    for pos in range(1, n):
        row = ExposureRow(
            head,
            event_id=f"{request_id}:{pos}",
            item_id=item_ids[pos],
            position=pos,
            propensity=propensities[pos],
            source=sources[pos],
            score=scores[pos],
        )
        if pos == n - 1:
            Event.model_validate(row)
        else:
            _check_item_fields(item_ids[pos], propensities[pos], sources[pos])
            _check_score(scores[pos])
        out.append(row)
    return out
