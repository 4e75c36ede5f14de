"""`POST /v1/events`: validate a batch of events one by one, store the good ones.

An event of a registered experiment whose unit was never assigned there, or is assigned
to another variant than the event names, is rejected (per index, 422), so no event is
counted for the wrong arm. Events of experiments the registry does not know are stored
as they are (the service cannot check them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from abrec.errors import ExperimentError, format_validation_error
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec
from abrec.serve.schemas import EventError, EventsResponse, Problem
from abrec.serve.services import Config, Metrics, Svc
from abrec.store import Event

PG_INT_MAX = 2**31 - 1

router = APIRouter(tags=["serve"])


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline local `$defs` references so a model's JSON schema can sit inside OpenAPI."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = walk(schema)
    assert isinstance(out, dict)
    return out


_EVENT_SCHEMA = _inline_refs(Event.model_json_schema())


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


def event_problem(raw: Any) -> tuple[Event | None, str | None]:
    """Validate one raw event; returns (event, None) or (None, message)."""
    if not isinstance(raw, dict):
        return None, f"an event must be a JSON object, got {type(raw).__name__}"
    try:
        event = Event.model_validate(raw)
    except ValidationError as exc:
        return None, format_validation_error(exc, what="event")
    for name, value in event.model_dump().items():
        if isinstance(value, str) and "\x00" in value:
            return None, f"{name}: must not contain NUL characters"
    if event.position is not None and event.position > PG_INT_MAX:
        return None, f"position: must be at most {PG_INT_MAX}"
    return event, None


def arm_problems(
    registry: ExperimentRegistry, events: Sequence[tuple[int, Event]]
) -> dict[int, str]:
    """Messages for events logged to an arm their unit is not assigned to, keyed by index.

    Only experiments the registry knows are checked; their assignments are read with
    one batched lookup. Events of other experiments are accepted as they are.
    """
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
) -> tuple[list[Event], list[EventError]]:
    """(valid events, per-index errors sorted by index) of a raw batch."""
    checked: list[tuple[int, Event]] = []
    errors: list[EventError] = []
    for i, raw in enumerate(raw_events):
        event, message = event_problem(raw)
        if event is None:
            errors.append(EventError(index=i, message=message or "invalid event"))
        else:
            checked.append((i, event))
    valid: list[Event] = []
    if checked:
        arm_errors = await run_in_threadpool(arm_problems, registry, checked)
        for i, event in checked:
            if i in arm_errors:
                errors.append(EventError(index=i, message=arm_errors[i]))
            else:
                valid.append(event)
        errors.sort(key=lambda e: e.index)
    return valid, errors


@router.post(
    "/v1/events",
    response_model=EventsResponse,
    responses={
        422: {"model": EventsResponse},
        413: {"model": Problem},
        503: {"model": Problem},
    },
)
async def events(body: EventsRequest, s: Svc, config: Config, metrics: Metrics) -> JSONResponse:
    """Store a batch of events; invalid ones are reported per index (422), valid ones kept."""
    if len(body.events) > config.max_events_per_request:
        raise HTTPException(
            413,
            f"{len(body.events)} events in one request; send at most "
            f"{config.max_events_per_request} per request",
        )
    valid, errors = await _check(s.registry, body.events)
    inserted = await s.write(valid)
    by_type: dict[str, int] = {}
    for e in valid:
        by_type[e.type] = by_type.get(e.type, 0) + 1
    for t, n in by_type.items():
        metrics.events_ingested.labels(type=t).inc(n)
    if errors:
        metrics.events_rejected.inc(len(errors))
    out = EventsResponse(accepted=len(valid), inserted=inserted, errors=errors)
    return JSONResponse(status_code=422 if errors else 200, content=out.model_dump())
