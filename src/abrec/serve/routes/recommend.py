"""`POST /v1/recommend`: rank items for a unit under its experiment variant, log exposures."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool

from abrec.errors import AbrecError, StoreError
from abrec.serve.schemas import Problem, RecommendedItem, RecommendRequest, RecommendResponse
from abrec.serve.services import Config, Metrics, Svc
from abrec.store import Event

router = APIRouter(tags=["serve"])


def _exposures(
    body: RecommendRequest, variant: str, request_id: str, items: list[str]
) -> list[Event]:
    """One exposure event per recommended item, keyed by request id and position."""
    return [
        Event(
            event_id=f"{request_id}:{pos}",
            experiment=body.experiment,
            variant=variant,
            unit_id=body.unit_id,
            type="exposure",
            item_id=item,
            position=pos,
            request_id=request_id,
        )
        for pos, item in enumerate(items)
    ]


@router.post(
    "/v1/recommend",
    response_model=RecommendResponse,
    responses={422: {"model": Problem}, 503: {"model": Problem}},
)
async def recommend(
    body: RecommendRequest, s: Svc, config: Config, metrics: Metrics
) -> RecommendResponse:
    """Rank items for a unit with its variant's model and log one exposure per item."""
    if body.k > config.max_k:
        raise HTTPException(422, f"k={body.k} is above max_k={config.max_k}; ask for fewer")
    history = body.context.history if body.context is not None else []

    def work() -> tuple[str | None, str | None, Any]:
        variant, model, reason = s.choose(body.experiment, body.unit_id)
        return variant, reason, s.engine.recommend(model, body.unit_id, body.k, history)

    try:
        variant, reason, ranked = await run_in_threadpool(work)
    except StoreError:
        raise
    except AbrecError as exc:
        raise HTTPException(422, str(exc)) from exc
    request_id = uuid.uuid4().hex
    if variant is None:
        metrics.fallbacks.labels(reason=reason or "none").inc()
    else:
        metrics.assignments.inc()
        if ranked.item_ids:
            exposures = _exposures(body, variant, request_id, list(ranked.item_ids))
            await s.write(exposures)
            metrics.events_ingested.labels(type="exposure").inc(len(exposures))
    return RecommendResponse(
        request_id=request_id,
        experiment=body.experiment,
        variant=variant,
        model=ranked.model,
        items=[
            RecommendedItem(item_id=i, position=p, score=sc)
            for p, (i, sc) in enumerate(zip(ranked.item_ids, ranked.scores, strict=True))
        ],
    )
