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
- Handlers reach the opened `Services`, the `ServeConfig` (tokens included) and the
  metrics through FastAPI dependencies (`abrec.serve.services`), which read `app.state`.
- Hardening (docs/security.md): request bodies above `ServeConfig.max_body_bytes` get 413
  before they are parsed (`BodyLimitMiddleware`: Content-Length and streamed bytes);
  a 422 lists at most `MAX_REPORTED_ERRORS` errors and never echoes the input; a store
  failure is a 503 whose body names no database address (the cause is logged); every
  response carries security headers (`abrec.serve.security`); `/docs` is off unless
  `ServeConfig.docs`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from abrec.errors import StoreError
from abrec.serve.config import ServeConfig
from abrec.serve.metrics import LatencyMiddleware, ServiceMetrics
from abrec.serve.routes import ROUTERS
from abrec.serve.security import BodyLimitMiddleware, SecurityHeadersMiddleware
from abrec.serve.services import Services, freeze_heap

log = logging.getLogger("abrec.serve")

#: A 422 lists at most this many errors; `more_errors` counts the others.
MAX_REPORTED_ERRORS = 20
_MAX_MESSAGE = 300


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the services at start (a failure is kept in `app.state.startup_error`)."""
    try:
        services = await run_in_threadpool(Services.open, app.state.config, app.state.metrics)
    except BaseException as exc:
        app.state.startup_error = exc
        raise
    app.state.services = services
    freeze_heap()
    try:
        yield
    finally:
        app.state.services = None
        try:
            await services.close_loop_writer()
        finally:
            await run_in_threadpool(services.close)


def _safe_text(value: object, limit: int = _MAX_MESSAGE) -> str:
    """`value` as a short string that always encodes as UTF-8 (lone surrogates escaped)."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _loc_part(part: object) -> str | int:
    """A location step; a dict key from the input is shown only when short and printable."""
    if isinstance(part, int):
        return part
    text = str(part)
    return text if text.isprintable() and len(text) <= 64 else "<key>"


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The 422 body for pydantic-style `errors`: location, message and type of at most
    `MAX_REPORTED_ERRORS` errors, never the input."""
    shown = []
    for err in errors[:MAX_REPORTED_ERRORS]:
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        ctx = err.get("ctx")
        if err.get("type") == "json_invalid" and isinstance(ctx, Mapping) and "error" in ctx:
            msg = f"{msg}: {ctx['error']}"
        shown.append(
            {
                "loc": [_loc_part(p) for p in err.get("loc", ())],
                "msg": _safe_text(msg),
                "type": _safe_text(err.get("type", "value_error"), 64),
            }
        )
    body: dict[str, Any] = {"detail": shown}
    if len(errors) > MAX_REPORTED_ERRORS:
        body["more_errors"] = len(errors) - MAX_REPORTED_ERRORS
    return body


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content=validation_problem(exc.errors()))


#: What FastAPI says (as a 400) when a body cannot be decoded at all (e.g. not UTF-8).
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> Any:
    """A body that cannot be decoded is a 422 like any other invalid body (not an
    undocumented 400); every other HTTP error keeps FastAPI's handling."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        issue = {"loc": ["body"], "msg": "the body is not valid UTF-8 JSON", "type": "json_invalid"}
        return JSONResponse(status_code=422, content=validation_problem([issue]))
    return await http_exception_handler(request, exc)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """503 without the database's message (it may name hosts); the cause is logged."""
    log.error("event store failure on %s %s: %s", request.method, request.url.path, exc)
    detail = "the event store is unavailable; retry the request shortly"
    if request.url.path == "/v1/events":
        detail += " (events are idempotent on event_id, so resending the batch is safe)"
    return JSONResponse(status_code=503, content={"detail": detail})


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal error"})


class _App(FastAPI):
    """FastAPI whose outermost layers add the security headers and limit the body size,
    so that every response (500s of Starlette's error middleware included) has the headers
    and no oversized body reaches any other layer."""

    max_body_bytes: int = ServeConfig.model_fields["max_body_bytes"].default

    def build_middleware_stack(self) -> ASGIApp:
        docs = frozenset(p for p in (self.docs_url, self.redoc_url) if p)
        limited = BodyLimitMiddleware(super().build_middleware_stack(), self.max_body_bytes)
        return SecurityHeadersMiddleware(limited, docs_paths=docs)


def create_app(config: ServeConfig) -> FastAPI:
    """Build the service; models, store and writer open in the lifespan."""
    app = _App(
        title="abrec",
        version="0.1.0",
        summary="Recommendations with A/B experiments, durable event logging and live results",
        lifespan=_lifespan,
        docs_url="/docs" if config.docs else None,
        redoc_url=None,
    )
    app.max_body_bytes = config.max_body_bytes
    app.state.config = config
    app.state.metrics = ServiceMetrics()
    app.state.services = None
    app.state.startup_error = None
    app.add_middleware(LatencyMiddleware, metrics=app.state.metrics)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    for router in ROUTERS:
        app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """The app of one worker process of `abrec serve --workers N` (a uvicorn factory): its
    config is the TOML file named by `ABREC_SERVE_CONFIG`, its tokens come from the
    environment (`abrec.serve.config.config_from_env`)."""
    import os

    from abrec.serve.config import config_from_env

    return create_app(config_from_env(os.environ))


__all__ = ["MAX_REPORTED_ERRORS", "app_from_env", "create_app", "validation_problem"]
