"""Operations: Prometheus `/metrics`, liveness `/healthz` and readiness `/readyz`.

All three are open. None shows experiment ids, model names or database addresses:
`/readyz` says only which check failed; the details (model names, the store error's
class) need the read or admin token, and the store error itself is logged.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from abrec.serve.schemas import Health
from abrec.serve.security import may_read
from abrec.serve.services import Config, Metrics, Services

router = APIRouter(tags=["ops"])
log = logging.getLogger("abrec.serve")


@router.get("/metrics", response_class=Response)
async def prometheus(metrics: Metrics) -> Response:
    """Prometheus metrics of this app instance (no experiment ids in labels)."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


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
