"""`POST /v1/events`: validate a batch of events one by one, store the good ones.

The contract of a batch:

- Each event is checked on its own; the good ones are stored and acknowledged even when
  others fail. The reply gives ``accepted`` (stored now or before: an identical replay),
  ``inserted`` (stored now), ``rejected`` (the rest) and ``errors``: one entry per refused
  event (``index`` in the batch, ``status`` 422 or 409, a short ``message`` that never
  echoes the event), sorted by index and listing at most `MAX_EVENT_ERRORS`.
- Status: 200 when nothing was refused; 409 when the only refusals are ``event_id``
  conflicts; 422 otherwise.
- Exposures are written only by the service (`/v1/recommend`): ``type="exposure"`` is
  refused. Clicks and conversions must reference an exposure served to that unit in
  that experiment and variant, at most one each per exposure (`abrec.store.ingest`
  states the rules; they are applied in the inserting transaction).
- An ``event_id`` already used by an event with other content is a 409 naming the id;
  an identical replay is accepted again and not stored twice.
- Other types (``covariate``, custom ones) of a registered experiment must name the
  variant the unit is assigned to now; of an unknown experiment they are stored as
  they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from abrec.errors import ExperimentError, format_validation_error
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec
from abrec.serve.schemas import (
    EventProblem,
    EventsReply,
    Problem,
    ValidationProblem,
    inline_schema,
)
from abrec.serve.services import Config, Metrics, Svc
from abrec.store import Event, event_row
from abrec.store.ingest import needs_exposure

PG_INT_MAX = 2**31 - 1

router = APIRouter(tags=["serve"])


_EVENT_SCHEMA = inline_schema(Event)


class EventsRequest(BaseModel):
    """A batch of events; each is validated on its own so good ones are stored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "3f2a9c:click:0",
                            "ts": "2026-01-05T12:00:00Z",
                            "experiment": "ease-vs-popularity",
                            "variant": "treatment",
                            "unit_id": "42",
                            "type": "click",
                            "item_id": "1196",
                            "position": 0,
                            "request_id": "3f2a9c",
                        },
                        {
                            "event_id": "42:covariate",
                            "experiment": "ease-vs-popularity",
                            "variant": "treatment",
                            "unit_id": "42",
                            "type": "covariate",
                            "value": 3.0,
                        },
                    ]
                }
            ]
        },
    )

    events: Annotated[list[Any], WithJsonSchema({"type": "array", "items": _EVENT_SCHEMA})] = Field(
        description="Events (see Event); invalid ones are reported per index"
    )


EXPOSURE_REFUSED = (
    "exposures are logged by the service when /v1/recommend answers; post clicks, "
    "conversions and covariates that reference them"
)


SERVICE_FIELDS_REFUSED = (
    "propensity, source, score and model_version are logged by the service with the exposures "
    "it serves; leave them out of clicks, conversions and covariates"
)


def event_problem(raw: Any) -> tuple[Event | None, str | None]:
    """Validate one raw event; returns (event, None) or (None, message)."""
    if not isinstance(raw, dict):
        return None, f"an event must be a JSON object, got {type(raw).__name__}"
    try:
        event = Event.model_validate(raw)
    except ValidationError as exc:
        return None, format_validation_error(exc, what="event")
    for name, value in event_row(event).items():
        if isinstance(value, str) and "\x00" in value:
            return None, f"{name}: must not contain NUL characters"
    if event.position is not None and event.position > PG_INT_MAX:
        return None, f"position: must be at most {PG_INT_MAX}"
    if event.type == "exposure":
        return None, EXPOSURE_REFUSED
    if any(
        v is not None for v in (event.propensity, event.source, event.score, event.model_version)
    ):
        return None, SERVICE_FIELDS_REFUSED
    return event, None


def arm_problems(
    registry: ExperimentRegistry, events: Sequence[tuple[int, Event]]
) -> dict[int, str]:
    """Messages for events logged to an arm their unit is not assigned to, keyed by index.

    Only experiments the registry knows are checked; their assignments are read with
    one batched lookup. Events of other experiments are accepted as they are. Clicks
    and conversions are not checked here: they are checked against the exposure they
    reference (its variant, not the unit's current one), in the store.
    """
    events = [(i, e) for i, e in events if not needs_exposure(e)]
    known: dict[str, ExperimentSpec] = {}
    for _, e in events:
        if e.experiment not in known:
            try:
                known[e.experiment] = registry.get(e.experiment)
            except ExperimentError:
                continue
    pairs = [(e.experiment, e.unit_id) for _, e in events if e.experiment in known]
    if not pairs:
        return {}
    assigned = registry.assignments(pairs)
    out: dict[int, str] = {}
    for i, e in events:
        if e.experiment not in known:
            continue
        variant = assigned.get((e.experiment, e.unit_id))
        if variant is None:
            out[i] = (
                f"unit {e.unit_id!r} was never exposed in experiment {e.experiment!r} (it has "
                "no assignment); log events only for units that /v1/recommend gave a variant"
            )
        elif variant != e.variant:
            out[i] = (
                f"unit {e.unit_id!r} is assigned to variant {variant!r} in experiment "
                f"{e.experiment!r}, not {e.variant!r}; log the variant /v1/recommend returned"
            )
    return out


async def _check(
    registry: ExperimentRegistry, raw_events: list[Any]
) -> tuple[list[tuple[int, Event]], list[EventProblem]]:
    """(valid (index, event) pairs, per-index errors) of a raw batch, before the store."""
    checked: list[tuple[int, Event]] = []
    errors: list[EventProblem] = []
    for i, raw in enumerate(raw_events):
        event, message = event_problem(raw)
        if event is None:
            errors.append(EventProblem(index=i, message=message or "invalid event"))
        else:
            checked.append((i, event))
    if not checked:
        return [], errors
    pairs = [(e.experiment, e.unit_id) for _, e in checked if not needs_exposure(e)]
    if registry.in_memory(pairs):  # no store query: cheaper than a thread hand-off
        arm_errors = arm_problems(registry, checked)
    else:
        arm_errors = await run_in_threadpool(arm_problems, registry, checked)
    errors += [EventProblem(index=i, message=m) for i, m in arm_errors.items()]
    return [(i, e) for i, e in checked if i not in arm_errors], errors


@router.post(
    "/v1/events",
    response_model=EventsReply,
    responses={
        409: {"model": EventsReply},
        422: {
            "model": EventsReply | ValidationProblem,
            "description": "some events refused (EventsReply), or the body is not a batch",
        },
        413: {"model": Problem},
        503: {"model": Problem},
    },
)
async def events(body: EventsRequest, s: Svc, config: Config, metrics: Metrics) -> Response:
    """Store a batch of events; refused ones are reported per index (422/409), good ones kept."""
    if len(body.events) > config.max_events_per_request:
        raise HTTPException(
            413,
            f"{len(body.events)} events in one request; send at most "
            f"{config.max_events_per_request} per request",
        )
    valid, errors = await _check(s.registry, body.events)
    outcomes = await s.write_checked([e for _, e in valid])
    by_type: dict[str, int] = {}
    accepted = inserted = 0
    for (i, e), o in zip(valid, outcomes, strict=True):
        if o.accepted:
            accepted += 1
        else:
            status = 409 if o.status == "conflict" else 422
            errors.append(EventProblem(index=i, message=o.message or o.status, status=status))
        if o.status == "inserted":
            inserted += 1
            by_type[e.type] = by_type.get(e.type, 0) + 1
    for t, n in by_type.items():
        metrics.events_ingested.labels(type=t).inc(n)
    if errors:
        metrics.events_rejected.inc(len(errors))
    errors.sort(key=lambda p: p.index)
    out = EventsReply(
        accepted=accepted,
        inserted=inserted,
        rejected=len(errors),
        errors=errors,
    )
    status = 200
    if errors:
        status = 409 if all(p.status == 409 for p in errors) else 422
    return Response(orjson.dumps(out.model_dump()), status, media_type="application/json")
