"""Ingestion rules for client events: idempotency by content, and clicks bounded by exposures.

The rules (the service applies them to every event posted to ``/v1/events``; the
store applies them inside the inserting transaction, see ``EventStore.ingest``):

- **One event per id.** An ``event_id`` already stored, or earlier in the same batch,
  with the same content is a *duplicate*: accepted again, not stored twice. With
  other content (any field; ``ts`` only when the client sent one) it is a *conflict*.
- **Clicks and conversions reference an exposure.** They name the ``item_id`` they are
  about, and that item must have been served (an ``exposure`` the service logged) to
  the same ``unit_id`` in the same experiment *and variant*. With a ``request_id`` the
  exposure is the one of that request and item (its ``position``, when given, must
  match); without, any exposure of that item to that unit in that variant qualifies.
- **The bound.** Each exposure takes at most one click and at most one conversion:
  per ``(experiment, request_id, item_id)`` at most one click (conversion); per
  ``(experiment, variant, unit_id, item_id)`` no more clicks (conversions) than
  exposures. Hence clicks ≤ exposures for every unit and every variant: a CTR above 1
  cannot be stored.

A referenced click is valid when its variant is the variant of the exposure it refers
to, whatever the unit's assignment is now (non-sticky experiments re-bucket units when
weights change).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from abrec.store.events import Event, ExposureRow, event_row

REFERENCING_TYPES: tuple[str, ...] = ("click", "conversion")
"""Event types that must reference an exposure, each bounded by one per exposure."""

Status = Literal["inserted", "duplicate", "conflict", "rejected"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one event: stored, already stored, id clash, or refused (message)."""

    status: Status
    message: str | None = None

    @property
    def accepted(self) -> bool:
        """Stored now or before (an identical replay)."""
        return self.status in ("inserted", "duplicate")


@dataclass(frozen=True)
class LedgerRow:
    """A stored exposure, click or conversion (the columns the rules need)."""

    type: str
    experiment: str
    variant: str
    unit_id: str
    item_id: str | None
    request_id: str | None
    position: int | None


def needs_exposure(event: Event | ExposureRow) -> bool:
    """Whether the event is a click or conversion (it must reference an exposure)."""
    kind = event["type"] if isinstance(event, ExposureRow) else event.type
    return kind in REFERENCING_TYPES


def short(s: str, n: int = 40) -> str:
    """``repr`` of an id, cut to ``n`` characters, for messages that must stay small."""
    return repr(s if len(s) <= n else s[: n - 1] + "…")


class Ledger:
    """Exposures and their clicks/conversions, grown as a batch is accepted in order."""

    def __init__(self, rows: Sequence[LedgerRow]) -> None:
        self.exposures: Counter[tuple[str, str, str, str]] = Counter()
        self.by_request: dict[tuple[str, str, str], LedgerRow] = {}
        self.used: Counter[tuple[str, str, str, str, str]] = Counter()
        self.used_requests: set[tuple[str, str, str, str]] = set()
        for r in rows:
            if r.item_id is None:
                continue
            key = (r.experiment, r.variant, r.unit_id, r.item_id)
            if r.type == "exposure":
                self.exposures[key] += 1
                if r.request_id is not None:
                    self.by_request[(r.experiment, r.request_id, r.item_id)] = r
            elif r.type in REFERENCING_TYPES:
                self._claim(r.type, key, r.experiment, r.request_id)

    def _claim(self, kind: str, key: tuple[str, str, str, str], exp: str, req: str | None) -> None:
        self.used[(kind, *key)] += 1
        if req is not None:
            self.used_requests.add((kind, exp, req, key[3]))

    def check(self, e: Event) -> str | None:
        """Why the click/conversion ``e`` is refused, or None (then it is claimed)."""
        if e.item_id is None:
            return (
                f"a {e.type} must name the item_id it is about: an item /v1/recommend "
                "served to this unit"
            )
        key = (e.experiment, e.variant, e.unit_id, e.item_id)
        n_exposed = self.exposures[key]
        if n_exposed == 0:
            return (
                f"item {short(e.item_id)} was never served to unit {short(e.unit_id)} in "
                f"experiment {short(e.experiment)}, variant {short(e.variant)}; a {e.type} "
                "must reference an exposure /v1/recommend logged (by request_id, or by "
                "unit and item) under the variant it returned"
            )
        if e.request_id is not None:
            served = self.by_request.get((e.experiment, e.request_id, e.item_id))
            if served is None or served.unit_id != e.unit_id or served.variant != e.variant:
                return (
                    f"request {short(e.request_id)} did not serve item {short(e.item_id)} to "
                    f"unit {short(e.unit_id)} in variant {short(e.variant)}; use the "
                    "request_id and variant /v1/recommend returned"
                )
            if e.position is not None and served.position != e.position:
                return (
                    f"position {e.position} does not match: request {short(e.request_id)} "
                    f"served item {short(e.item_id)} at position {served.position}"
                )
            if (e.type, e.experiment, e.request_id, e.item_id) in self.used_requests:
                return (
                    f"item {short(e.item_id)} of request {short(e.request_id)} already has a "
                    f"{e.type}; an exposure takes at most one {e.type}"
                )
        if self.used[(e.type, *key)] >= n_exposed:
            return (
                f"unit {short(e.unit_id)} already has {n_exposed} {e.type}(s) on item "
                f"{short(e.item_id)} in variant {short(e.variant)}, one per exposure of it; "
                f"an exposure takes at most one {e.type}"
            )
        self._claim(e.type, key, e.experiment, e.request_id)
        return None


def _differences(event: Event, stored: dict[str, Any]) -> list[str]:
    """Fields where ``event`` differs from a stored row (``ts`` only if the client set it)."""
    mine = event_row(event)
    fields = [f for f in mine if f != "ts" or "ts" in event.model_fields_set]
    return [f for f in fields if mine[f] != stored.get(f)]


def decide(
    events: Sequence[Event | ExposureRow],
    verify: Sequence[bool],
    stored: dict[str, dict[str, Any]],
    ledger: Ledger,
) -> tuple[list[Outcome], list[dict[str, Any]]]:
    """Apply the rules to a batch in order; (outcome per event, rows to insert).

    ``stored`` holds the already stored rows of the batch's ids; ``ledger`` the
    exposures and claims of the units and items the batch's clicks name.
    """
    outcomes: list[Outcome] = []
    rows: list[dict[str, Any]] = []
    first: dict[str, dict[str, Any]] = dict(stored)
    for e, checked in zip(events, verify, strict=True):
        if checked and not isinstance(e, Event):
            raise TypeError("only Event objects can be checked under the ingestion rules")
        previous = first.get(e.event_id)
        if previous is not None:
            diff = _differences(e, previous) if isinstance(e, Event) and checked else []
            if diff:
                outcomes.append(
                    Outcome(
                        "conflict",
                        f"event_id {short(e.event_id)} is already taken by an event with other "
                        f"content (differs in: {', '.join(diff)}); an event_id names one "
                        "event, so give a new event a new id",
                    )
                )
            else:
                outcomes.append(Outcome("duplicate"))
            continue
        if checked and isinstance(e, Event) and needs_exposure(e):
            problem = ledger.check(e)
            if problem is not None:
                outcomes.append(Outcome("rejected", problem))
                continue
        row = event_row(e)
        first[e.event_id] = row
        rows.append(row)
        outcomes.append(Outcome("inserted"))
    return outcomes, rows


__all__ = [
    "REFERENCING_TYPES",
    "Ledger",
    "LedgerRow",
    "Outcome",
    "decide",
    "needs_exposure",
    "short",
]
