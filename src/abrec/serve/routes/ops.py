"""Operations: Prometheus `/metrics`, liveness `/healthz` and readiness `/readyz`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from abrec.serve.schemas import Health
from abrec.serve.services import Metrics, Services

router = APIRouter(tags=["ops"])


@router.get("/metrics", response_class=Response)
async def prometheus(metrics: Metrics) -> Response:
    """Prometheus metrics of this app instance."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: models loaded, store reachable, writer running."""
    s: Services | None = request.app.state.services
    checks: dict[str, str] = {}
    if s is None:
        checks["lifespan"] = "not started"
    else:
        checks["models"] = ",".join(s.engine.model_names)
        try:
            await run_in_threadpool(s.store.count, "__readyz__")
            checks["store"] = "ok"
        except Exception as exc:
            checks["store"] = f"error: {exc}"
    ready = s is not None and checks.get("store") == "ok"
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())
