"""The FastAPI application: recommend, events, admin, results, metrics and health.

Choices worth knowing:
- Models are loaded once at start (lifespan); a request maps ids, scores one row in a
  worker thread (`run_in_threadpool`) and takes a top-k. Nothing trains or re-encodes.
- A request for an experiment that does not exist, is not running, or whose coverage
  excludes the unit is answered by the fallback model with `variant: null`, and *no*
  exposure is logged: exposures only ever belong to an assigned (experiment, variant),
  so the analysis never sees traffic that was not randomised.
- `/v1/events` rejects (per index, 422) an event of a registered experiment whose unit
  was never assigned there or is assigned to another variant than the event names, so
  no event is counted for the wrong arm; this holds for every type, covariates
  included (the simulator sends them only after `/v1/recommend` gave a variant).
  Assignments of the whole batch are read in one query. Events of experiments the
  registry does not know are stored as they are (the service cannot check them).
- Exposures and ingested events go through the `BatchWriter`; a response is sent only
  after its events are committed, so an acknowledged event is durable.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from abrec.errors import AbrecError, ConfigError, ExperimentError, StoreError
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec, load_specs
from abrec.serve.config import ServeConfig
from abrec.serve.engine import Engine
from abrec.serve.metrics import LatencyMiddleware, ServiceMetrics
from abrec.serve.schemas import (
    EventError,
    EventsResponse,
    Health,
    Problem,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    WeightsRequest,
)
from abrec.store import BatchWriter, Event, EventStore

PG_INT_MAX = 2**31 - 1


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


def _event_problem(raw: Any) -> tuple[Event | None, str | None]:
    """Validate one raw event; returns (event, None) or (None, message)."""
    if not isinstance(raw, dict):
        return None, f"an event must be a JSON object, got {type(raw).__name__}"
    try:
        event = Event.model_validate(raw)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "event"
            msgs.append(f"{loc}: {err['msg']}")
        return None, "; ".join(msgs)
    for name, value in event.model_dump().items():
        if isinstance(value, str) and "\x00" in value:
            return None, f"{name}: must not contain NUL characters"
    if event.position is not None and event.position > PG_INT_MAX:
        return None, f"position: must be at most {PG_INT_MAX}"
    return event, None


def _arm_problems(
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


@dataclass
class Services:
    """What the lifespan opens once: models, store, writer, registry."""

    config: ServeConfig
    engine: Engine
    store: EventStore
    writer: BatchWriter
    registry: ExperimentRegistry
    metrics: ServiceMetrics

    @classmethod
    def open(cls, config: ServeConfig, metrics: ServiceMetrics) -> Services:
        """Load the bundle, open the store and writer, load experiments from TOML."""
        engine = Engine.load(config.bundle, config.fallback_model)
        store = EventStore.from_url(config.store_url, table_prefix=config.table_prefix)
        try:
            store.create_schema()
            registry = ExperimentRegistry(store)
            if config.experiments is not None:
                for spec in load_specs(config.experiments):
                    missing = [v.model for v in spec.variants if not engine.has_model(v.model)]
                    if missing:
                        raise ConfigError(
                            f"experiment {spec.id!r} serves model(s) {missing} that are not in "
                            f"the bundle {config.bundle} (it has {engine.model_names})"
                        )
                    registry.upsert(spec)  # a stored version (admin changes) wins
            writer = BatchWriter(
                store, max_batch=config.batch.max_batch, max_delay_s=config.batch.max_delay_s
            )
        except BaseException:
            store.dispose()
            raise
        return cls(config, engine, store, writer, registry, metrics)

    def close(self) -> None:
        """Flush pending events and release the store."""
        try:
            self.writer.close()
        finally:
            self.store.dispose()

    def choose(self, experiment: str, unit_id: str) -> tuple[str | None, str, str | None]:
        """(variant, model, fallback reason) for a unit in an experiment."""
        try:
            spec = self.registry.get(experiment)
        except ExperimentError:
            return None, self.engine.fallback_model, "unknown_experiment"
        if spec.status != "running":
            return None, self.engine.fallback_model, "not_running"
        variant = self.registry.assign(experiment, unit_id)
        if variant is None:
            return None, self.engine.fallback_model, "not_assigned"
        model = spec.variant(variant).model
        if not self.engine.has_model(model):
            return None, self.engine.fallback_model, "model_missing"
        return variant, model, None

    async def write(self, events: Sequence[Event]) -> int:
        """Submit events to the batch writer and wait until they are committed."""
        if not events:
            return 0
        start = time.perf_counter()
        try:
            inserted = await asyncio.wrap_future(self.writer.submit(events))
        except AbrecError:
            raise
        except Exception as exc:
            raise StoreError(f"the event store could not write the events: {exc}") from exc
        self.metrics.store_write_latency.observe(time.perf_counter() - start)
        return int(inserted)


def _services(request: Request) -> Services:
    s: Services | None = request.app.state.services
    if s is None:
        raise HTTPException(503, "the service is starting or shutting down; retry shortly")
    return s


Svc = Annotated[Services, Depends(_services)]
_bearer = HTTPBearer(auto_error=False, description="ABREC_ADMIN_TOKEN")


def _require_admin(
    request: Request,
    cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries `Authorization: Bearer <ABREC_ADMIN_TOKEN>`."""
    token: str | None = request.app.state.admin_token
    ok = (
        token is not None
        and cred is not None
        and cred.scheme.lower() == "bearer"
        and secrets.compare_digest(cred.credentials.encode(), token.encode())
    )
    if not ok:
        raise HTTPException(
            401,
            "admin routes need 'Authorization: Bearer <ABREC_ADMIN_TOKEN>'"
            + ("" if token else " (ABREC_ADMIN_TOKEN is not set on the server)"),
            headers={"WWW-Authenticate": "Bearer"},
        )


ExperimentId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        openapi_examples={"experiment": {"value": "ease-vs-popularity"}},
    ),
]

_SPEC_EXAMPLES: dict[str, Any] = {
    "ab": {
        "summary": "A/B test of two bundle models",
        "value": {
            "id": "ease-vs-popularity-2",
            "variants": [
                {"name": "control", "weight": 0.5, "model": "popularity"},
                {"name": "treatment", "weight": 0.5, "model": "ease"},
            ],
            "primary_metric": "ctr",
            "guardrails": ["exposures_per_unit"],
        },
    }
}


def _spec_json(spec: ExperimentSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def create_app(config: ServeConfig) -> FastAPI:
    """Build the service; models, store and writer open in the lifespan."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            services = await run_in_threadpool(Services.open, config, metrics)
        except BaseException as exc:
            app.state.startup_error = exc
            raise
        app.state.services = services
        try:
            yield
        finally:
            app.state.services = None
            await run_in_threadpool(services.close)

    app = FastAPI(
        title="abrec",
        version="0.1.0",
        summary="Recommendations with A/B experiments, durable event logging and live results",
        lifespan=lifespan,
    )
    app.state.services = None
    app.state.startup_error = None
    app.state.admin_token = ServeConfig.admin_token()
    app.state.metrics = metrics
    app.add_middleware(LatencyMiddleware, metrics=metrics)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content={"detail": f"{exc}; retry the request (events are idempotent on event_id)"},
        )

    err: dict[int | str, dict[str, Any]] = {422: {"model": Problem}, 503: {"model": Problem}}

    @app.post("/v1/recommend", response_model=RecommendResponse, responses=err, tags=["serve"])
    async def recommend(body: RecommendRequest, s: Svc) -> RecommendResponse:
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
            metrics.assignments.labels(experiment=body.experiment, variant=variant).inc()
            if ranked.item_ids:
                exposures = [
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
                    for pos, item in enumerate(ranked.item_ids)
                ]
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

    @app.post(
        "/v1/events",
        response_model=EventsResponse,
        responses={
            422: {"model": EventsResponse},
            413: {"model": Problem},
            503: {"model": Problem},
        },
        tags=["serve"],
    )
    async def events(body: EventsRequest, s: Svc) -> JSONResponse:
        """Store a batch of events; invalid ones are reported per index (422), valid ones kept."""
        if len(body.events) > config.max_events_per_request:
            raise HTTPException(
                413,
                f"{len(body.events)} events in one request; send at most "
                f"{config.max_events_per_request} per request",
            )
        checked: list[tuple[int, Event]] = []
        errors: list[EventError] = []
        for i, raw in enumerate(body.events):
            event, message = _event_problem(raw)
            if event is None:
                errors.append(EventError(index=i, message=message or "invalid event"))
            else:
                checked.append((i, event))
        valid: list[Event] = []
        if checked:
            arm_errors = await run_in_threadpool(_arm_problems, s.registry, checked)
            for i, event in checked:
                if i in arm_errors:
                    errors.append(EventError(index=i, message=arm_errors[i]))
                else:
                    valid.append(event)
            errors.sort(key=lambda e: e.index)
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

    @app.get(
        "/v1/experiments/{experiment_id}/results",
        responses={404: {"model": Problem}, 409: {"model": Problem}},
        tags=["results"],
    )
    async def results(experiment_id: ExperimentId, s: Svc) -> dict[str, Any]:
        """Live analysis: per-variant metrics, SRM, effects with CIs (fixed and sequential)."""
        spec = _get_spec(s, experiment_id)
        from abrec.experiment.analysis import analyze

        try:
            res = await run_in_threadpool(analyze, s.store, spec)
        except StoreError:
            raise
        except (AbrecError, ValueError) as exc:
            raise HTTPException(409, f"cannot analyse {experiment_id!r} yet: {exc}") from exc
        out: dict[str, Any] = res.to_dict()
        return out

    # --- admin ---------------------------------------------------------------------------
    admin = [Depends(_require_admin)]
    admin_err: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem},
    }

    def _get_spec(s: Services, experiment_id: str) -> ExperimentSpec:
        try:
            return s.registry.get(experiment_id)
        except ExperimentError as exc:
            raise HTTPException(404, f"no experiment {experiment_id!r}: {exc}") from exc

    @app.get("/v1/admin/experiments", dependencies=admin, responses=admin_err, tags=["admin"])
    async def list_experiments(s: Svc) -> list[dict[str, Any]]:
        """All experiments (latest version of each)."""
        specs = await run_in_threadpool(s.registry.list)
        return [_spec_json(x) for x in specs]

    @app.post(
        "/v1/admin/experiments",
        status_code=201,
        dependencies=admin,
        responses={**admin_err, 422: {"model": Problem}},
        tags=["admin"],
    )
    async def create_experiment(
        spec: Annotated[ExperimentSpec, Body(openapi_examples=_SPEC_EXAMPLES)], s: Svc
    ) -> dict[str, Any]:
        """Create an experiment; every variant's model must be in the loaded bundle."""
        missing = sorted({v.model for v in spec.variants if not s.engine.has_model(v.model)})
        if missing:
            raise HTTPException(
                422, f"model(s) {missing} are not in the bundle; use one of {s.engine.model_names}"
            )
        try:
            created = await run_in_threadpool(s.registry.create, spec)
        except ExperimentError as exc:
            raise HTTPException(409, str(exc)) from exc
        return _spec_json(created if isinstance(created, ExperimentSpec) else spec)

    async def _transition(s: Services, experiment_id: str, action: str) -> dict[str, Any]:
        _get_spec(s, experiment_id)
        try:
            spec = await run_in_threadpool(getattr(s.registry, action), experiment_id)
        except ExperimentError as exc:
            raise HTTPException(409, str(exc)) from exc
        if not isinstance(spec, ExperimentSpec):
            spec = s.registry.get(experiment_id)
        return _spec_json(spec)

    def _add_transition(action: str, doc: str) -> None:
        """Register POST /v1/admin/experiments/{id}/<action> (operation `<action>_experiment`)."""

        async def handler(experiment_id: ExperimentId, s: Svc) -> dict[str, Any]:
            return await _transition(s, experiment_id, action)

        handler.__name__ = handler.__qualname__ = f"{action}_experiment"
        handler.__doc__ = doc
        app.post(
            f"/v1/admin/experiments/{{experiment_id}}/{action}",
            dependencies=admin,
            responses=admin_err,
            tags=["admin"],
        )(handler)

    _add_transition("start", "Start assigning units (draft or stopped → running).")
    _add_transition(
        "stop", "Stop assigning units; recommendations fall back, results stay available."
    )

    @app.put(
        "/v1/admin/experiments/{experiment_id}/weights",
        dependencies=admin,
        responses={**admin_err, 422: {"model": Problem}},
        tags=["admin"],
    )
    async def set_weights(
        experiment_id: ExperimentId, body: WeightsRequest, s: Svc
    ) -> dict[str, Any]:
        """Change traffic weights; sticky experiments keep already-assigned units."""
        _get_spec(s, experiment_id)
        try:
            spec = await run_in_threadpool(s.registry.set_weights, experiment_id, body.weights)
        except ExperimentError as exc:
            raise HTTPException(422, str(exc)) from exc
        if not isinstance(spec, ExperimentSpec):
            spec = s.registry.get(experiment_id)
        return _spec_json(spec)

    # --- operations ----------------------------------------------------------------------
    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics of this app instance."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}}, tags=["ops"])
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

    return app
