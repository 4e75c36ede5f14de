"""`POST /v1/recommend`: rank items for a unit under its experiment variant, log exposures.

A/B and bandit experiments rank with the assigned variant's model. Interleaving
experiments rank with every variant's model and merge the lists (`abrec.interleave`); each
exposure keeps what the credit rule needs (``source``) and the probability of the item
being shown at that position (``propensity``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from abrec.errors import AbrecError, StoreError
from abrec.interleave import interleave
from abrec.serve.config import ServeConfig
from abrec.serve.engine import Engine, Ranked
from abrec.serve.metrics import ServiceMetrics
from abrec.serve.schemas import (
    Problem,
    RecommendRequest,
    RecommendResponse,
    inline_schema,
)
from abrec.serve.services import Choice, services_of
from abrec.store import ExposureRow, exposure_rows

router = APIRouter(tags=["serve"])


@dataclass(frozen=True)
class Served:
    """The list a request answers with and what each exposure logs.

    ``logged_scores`` are the scores stored with the exposures (read by the drift monitor):
    the serving model's, or None for an interleaved list, whose items come from several
    models with incomparable scores.
    """

    model: str
    item_ids: list[str]
    scores: list[float]
    sources: list[str | None]
    propensities: list[float | None]
    logged_scores: list[float | None]


def _serve(engine: Engine, choice: Choice, body: RecommendRequest, request_id: str) -> Served:
    """Rank (and, for an interleaving experiment, merge) the list of one request."""
    history = body.context.history if body.context is not None else []
    ranked: dict[str, Ranked] = {
        name: engine.recommend(model, body.unit_id, body.k, history)
        for name, model in choice.models.items()
    }
    if choice.spec is None or choice.spec.type != "interleaving":
        (r,) = ranked.values()
        n = len(r.item_ids)
        return Served(
            r.model, r.item_ids, r.scores, [None] * n, [choice.propensity] * n, [*r.scores]
        )
    rng = np.random.default_rng(uuid.UUID(hex=request_id).int)
    merged = interleave(
        choice.spec.interleaving_method, {n: r.item_ids for n, r in ranked.items()}, body.k, rng
    )
    score_of: dict[str, float] = {}
    for r in reversed(ranked.values()):  # the first variant's score wins
        score_of.update(zip(r.item_ids, r.scores, strict=True))
    return Served(
        "+".join(r.model for r in ranked.values()),
        list(merged.items),
        [score_of[i] for i in merged.items],
        list(merged.sources),
        list(merged.propensities),
        [None] * len(merged.items),
    )


def _exposures(
    body: RecommendRequest,
    variant: str,
    request_id: str,
    served: Served,
    model_version: str | None = None,
) -> list[ExposureRow]:
    """One exposure per recommended item, keyed by request id and position."""
    return exposure_rows(
        request_id=request_id,
        experiment=body.experiment,
        variant=variant,
        unit_id=body.unit_id,
        item_ids=served.item_ids,
        propensities=served.propensities,
        sources=served.sources,
        scores=served.logged_scores,
        model_version=model_version,
    )


def _reply(
    body: RecommendRequest,
    request_id: str,
    variant: str | None,
    served: Served,
    model_version: str | None,
) -> bytes:
    """The `RecommendResponse` JSON, serialised directly (same fields and types)."""
    return orjson.dumps(
        {
            "request_id": request_id,
            "experiment": body.experiment,
            "variant": variant,
            "model": served.model,
            "model_version": model_version,
            "items": [
                {"item_id": i, "position": p, "score": sc, "source": src}
                for p, (i, sc, src) in enumerate(
                    zip(served.item_ids, served.scores, served.sources, strict=True)
                )
            ],
        }
    )


def _json_content_type(value: str | None) -> bool:
    """Whether a Content-Type names JSON (absent counts: FastAPI's rule for JSON bodies)."""
    if not value:
        return True
    kind = value.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


async def _body(request: Request) -> RecommendRequest:
    """The request body as a `RecommendRequest`, parsed and validated in one pass by
    pydantic (`model_validate_json`); failures are the 422 every route gives.

    The route reads its body itself instead of through a FastAPI body parameter: that path
    (stdlib JSON, then validation of the Python objects, dependency solving) was 8% of the
    request's CPU under load (bench_serve.py). The OpenAPI schema is unchanged.
    """
    if not _json_content_type(request.headers.get("content-type")):
        raise RequestValidationError(
            [
                {
                    "loc": ("body",),
                    "msg": "the body must be JSON (application/json)",
                    "type": "model_attributes_type",
                }
            ]
        )
    raw = await request.body()
    try:
        return RecommendRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for err in exc.errors(include_url=False, include_input=False):
            e: dict[str, Any] = {**err, "loc": ("body", *err["loc"])}
            if e["type"] == "json_invalid":  # pydantic's message already says where
                e.pop("ctx", None)
                if not _utf8(raw):
                    e["msg"] = "the body is not valid UTF-8 JSON"
            errors.append(e)
        raise RequestValidationError(errors) from None


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@router.post(
    "/v1/recommend",
    response_model=RecommendResponse,
    responses={422: {"model": Problem}, 503: {"model": Problem}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(RecommendRequest)}},
        }
    },
)
async def recommend(request: Request) -> Response:
    """Rank items for a unit with its variant's model and log one exposure per item."""
    body = await _body(request)
    s = services_of(request)
    config: ServeConfig = request.app.state.config
    metrics: ServiceMetrics = request.app.state.metrics
    if body.k > config.max_k:
        raise HTTPException(422, f"k={body.k} is above max_k={config.max_k}; ask for fewer")
    request_id = uuid.uuid4().hex

    engine = s.engine  # read once: a model reload swaps it, this request keeps its own

    def work() -> tuple[Choice, Served]:
        choice = s.choose(body.experiment, body.unit_id, engine)
        return choice, _serve(engine, choice, body, request_id)

    try:
        if s.registry.needs_store(body.experiment, body.unit_id):
            choice, served = await run_in_threadpool(work)
        else:  # assignment in memory: scoring one row is cheaper than a thread hand-off
            choice, served = work()
    except StoreError:
        raise
    except AbrecError as exc:
        raise HTTPException(422, str(exc)) from exc
    if choice.variant is None:
        metrics.fallbacks.labels(reason=choice.reason or "none").inc()
    else:
        metrics.assignments.inc()
        if served.item_ids:
            exposures = _exposures(body, choice.variant, request_id, served, engine.version)
            await s.write(exposures)
            metrics.events_ingested.labels(type="exposure").inc(len(exposures))
    reply = _reply(body, request_id, choice.variant, served, engine.version)
    return Response(reply, media_type="application/json")
