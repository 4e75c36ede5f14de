"""The FastAPI application: `create_app` wires the routers, the lifespan and error handling.

Choices worth knowing:
- Models are loaded once at start (lifespan); a request maps ids, scores one row in a
  worker thread (`run_in_threadpool`) and takes a top-k. Nothing trains or re-encodes.
- A request for an experiment that does not exist, is not running, or whose coverage
  excludes the unit is answered by the fallback model with `variant: null`, and *no*
  exposure is logged: exposures only ever belong to an assigned (experiment, variant),
  so the analysis never sees traffic that was not randomised.
- `/v1/events` rejects (per index, 422) an event of a registered experiment whose unit
  was never assigned there or is assigned to another variant than the event names
  (see `abrec.serve.routes.events`).
- Exposures and ingested events go through the `BatchWriter`; a response is sent only
  after its events are committed, so an acknowledged event is durable.
- Handlers reach the opened `Services`, the `ServeConfig` (admin token included) and the
  metrics through FastAPI dependencies (`abrec.serve.services`), which read `app.state`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from abrec.errors import StoreError
from abrec.serve.config import ServeConfig
from abrec.serve.metrics import LatencyMiddleware, ServiceMetrics
from abrec.serve.routes import ROUTERS
from abrec.serve.services import Services


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the services at start (a failure is kept in `app.state.startup_error`)."""
    try:
        services = await run_in_threadpool(Services.open, app.state.config, app.state.metrics)
    except BaseException as exc:
        app.state.startup_error = exc
        raise
    app.state.services = services
    try:
        yield
    finally:
        app.state.services = None
        await run_in_threadpool(services.close)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"detail": f"{exc}; retry the request (events are idempotent on event_id)"},
    )


def create_app(config: ServeConfig) -> FastAPI:
    """Build the service; models, store and writer open in the lifespan."""
    app = FastAPI(
        title="abrec",
        version="0.1.0",
        summary="Recommendations with A/B experiments, durable event logging and live results",
        lifespan=_lifespan,
    )
    app.state.config = config
    app.state.metrics = ServiceMetrics()
    app.state.services = None
    app.state.startup_error = None
    app.add_middleware(LatencyMiddleware, metrics=app.state.metrics)
    app.add_exception_handler(StoreError, _store_error)
    for router in ROUTERS:
        app.include_router(router)
    return app


__all__ = ["create_app"]
