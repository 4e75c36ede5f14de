"""Operations: Prometheus `/metrics`, liveness `/healthz` and readiness `/readyz`.

`/healthz` and `/readyz` are open and show no experiment ids, model names or database
addresses: `/readyz` says only which check failed; the details (model names, the store
error's class) need the read or admin token, and the store error itself is logged.
`/metrics` carries the ids of running experiments, their variants and model names (the
monitor's series); it is open unless `ABREC_METRICS_TOKEN` is set, then it needs that
bearer token (docs/security.md).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from abrec.serve.schemas import Health, Problem
from abrec.serve.security import may_read, require_metrics
from abrec.serve.services import Config, Metrics, Services

router = APIRouter(tags=["ops"])
log = logging.getLogger("abrec.serve")


@router.get(
    "/metrics",
    response_class=Response,
    responses={401: {"model": Problem}},
    dependencies=[Depends(require_metrics)],
)
async def prometheus(metrics: Metrics) -> Response:
    """Prometheus metrics of this app instance (bearer token when ABREC_METRICS_TOKEN is set)."""
    body = await run_in_threadpool(generate_latest, metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request, config: Config) -> JSONResponse:
    """Readiness: models loaded, store reachable. With the read token: the details."""
    detailed = await may_read(request, config)
    s: Services | None = request.app.state.services
    checks: dict[str, str] = {}
    if s is None:
        checks["lifespan"] = "not started"
    else:
        checks["lifespan"] = "ok"
        checks["models"] = ",".join(s.engine.model_names) if detailed else "loaded"
        try:
            await run_in_threadpool(s.store.count, "__readyz__")
            checks["store"] = "ok"
        except Exception as exc:
            log.warning("readiness: the event store check failed: %s", exc)
            checks["store"] = f"unavailable ({type(exc).__name__})" if detailed else "unavailable"
    ready = s is not None and checks.get("store") == "ok"
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())
