"""What the service opens once at start (models, store, writer, registry) and the
FastAPI dependencies through which route handlers reach it and the app's configuration."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Path, Request

from abrec.errors import AbrecError, ConfigError, ExperimentError, StoreError
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec, load_specs
from abrec.monitor.drift import DriftMonitor
from abrec.serve.bandits import BanditUpdater
from abrec.serve.config import ServeConfig
from abrec.serve.engine import Engine
from abrec.serve.metrics import ServiceMetrics
from abrec.serve.monitor import ServiceMonitor
from abrec.store import BatchWriter, Event, EventStore
from abrec.store.ingest import Outcome

T = TypeVar("T")

log = logging.getLogger(__name__)


class DatabaseUnavailableError(StoreError):
    """The event store's database did not answer at start, after the configured retries."""


def database_problem(url: str, timeout_s: float = 3.0) -> str | None:
    """Why the database at SQLAlchemy `url` cannot serve a `SELECT 1` (None when it can).

    The answer is one line: the exception's class and the first line of its message.
    Meant for server databases (PostgreSQL); a SQLite URL creates its file when missing.
    """
    import sqlalchemy as sa

    args = {"connect_timeout": max(1, round(timeout_s))} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, connect_args=args)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure means the database is not usable
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first}"
    finally:
        engine.dispose()
    return None


def safe_url(url: str) -> str:
    """`url` with its password masked (for logs and operator messages)."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show only its scheme
        return url.split(":", 1)[0] + "://…"


def wait_for_store(config: ServeConfig) -> None:
    """Wait for a server database (PostgreSQL) with the configured retries; SQLite needs none.

    Raises:
        DatabaseUnavailableError: when it is still unreachable after the retries.
    """
    if not config.store_url.startswith("sqlite"):
        wait_for_database(
            config.store_url,
            retries=config.db_connect_retries,
            timeout_s=config.db_connect_timeout_s,
            backoff_s=config.db_retry_backoff_s,
        )


def wait_for_database(
    url: str,
    *,
    retries: int,
    timeout_s: float,
    backoff_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until the database answers: 1 + `retries` attempts, the waits between them
    starting at `backoff_s` and doubling (at most 30 s each). Each failed attempt logs one
    warning line.

    Raises:
        DatabaseUnavailableError: when the last attempt fails (one line, password masked).
    """
    wait = backoff_s
    for attempt in range(retries + 1):
        problem = database_problem(url, timeout_s)
        if problem is None:
            return
        if attempt == retries:
            raise DatabaseUnavailableError(
                f"the event store database {safe_url(url)} is unreachable after "
                f"{retries + 1} attempt(s): {problem}"
            )
        log.warning(
            "event store database %s is unreachable (attempt %d of %d): %s; retrying in %.1f s",
            safe_url(url),
            attempt + 1,
            retries + 1,
            problem,
            wait,
        )
        sleep(wait)
        wait = min(30.0, wait * 2)


@dataclass(frozen=True)
class Choice:
    """How one request is served.

    ``models`` maps ranker names to models: the assigned variant's model, or every
    variant's for an interleaving experiment. ``propensity`` is the probability the policy
    had of serving this unit this way (1 for an A/B variant's deterministic ranking; a
    bandit arm's probability when the unit was assigned; None if not logged).
    """

    spec: ExperimentSpec | None
    variant: str | None
    models: dict[str, str]
    reason: str | None
    propensity: float | None

    @classmethod
    def fallback(cls, model: str, reason: str) -> Choice:
        """The fallback model answers; nothing is logged."""
        return cls(None, None, {"fallback": model}, reason, None)


@dataclass
class Services:
    """What the lifespan opens once: models, store, writer, registry."""

    config: ServeConfig
    engine: Engine
    store: EventStore
    writer: BatchWriter
    registry: ExperimentRegistry
    metrics: ServiceMetrics
    bandits: BanditUpdater
    monitor: ServiceMonitor

    @classmethod
    def open(cls, config: ServeConfig, metrics: ServiceMetrics) -> Services:
        """Load the bundle, wait for the database (bounded retries), open the store and
        writer, load experiments from TOML, start the bandit updates and the monitor."""
        engine = Engine.load(config.bundle, config.fallback_model)
        wait_for_store(config)
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
        bandits = BanditUpdater(registry)
        bandits.start()
        metrics.collector.writer = writer
        drift = DriftMonitor(engine.bundle) if config.monitor else None
        monitor = ServiceMonitor(config, store, registry, drift, metrics)
        if config.monitor:
            monitor.start()
        return cls(config, engine, store, writer, registry, metrics, bandits, monitor)

    def close(self) -> None:
        """Stop the monitor and the bandit updates, flush pending events, release the store."""
        try:
            self.monitor.close()
            self.bandits.close()
            self.writer.close()
        finally:
            self.store.dispose()

    def choose(self, experiment: str, unit_id: str) -> Choice:
        """What serves a unit in an experiment: its variant, the model(s) and the
        probability of the assignment, or the fallback model and why."""
        try:
            spec = self.registry.get(experiment)
        except ExperimentError:
            return Choice.fallback(self.engine.fallback_model, "unknown_experiment")
        if spec.status != "running":
            return Choice.fallback(self.engine.fallback_model, "not_running")
        got = self.registry.assign_with_propensity(experiment, unit_id)
        if got is None:
            return Choice.fallback(self.engine.fallback_model, "not_assigned")
        variant, propensity = got
        if spec.type == "interleaving":
            models = {v.name: v.model for v in spec.variants}
        else:
            models = {variant: spec.variant(variant).model}
        if not all(self.engine.has_model(m) for m in models.values()):
            return Choice.fallback(self.engine.fallback_model, "model_missing")
        if spec.type == "ab":
            propensity = 1.0  # the variant's ranking is deterministic
        return Choice(spec, variant, models, None, propensity)

    async def write(self, events: Sequence[Event]) -> int:
        """Submit the service's own events (exposures) and wait until they are committed."""
        if not events:
            return 0
        inserted: int = await self._committed(lambda: self.writer.submit(events))
        return inserted

    async def write_checked(self, events: Sequence[Event]) -> list[Outcome]:
        """Submit client events under the ingestion rules; their outcomes once committed."""
        if not events:
            return []
        return await self._committed(lambda: self.writer.submit_checked(events))

    async def _committed(self, submit: Callable[[], Future[T]]) -> T:
        """Await a writer submission; any failure but our own errors becomes a StoreError."""
        start = time.perf_counter()
        try:
            out = await asyncio.wrap_future(submit())
        except AbrecError:
            raise
        except Exception as exc:
            raise StoreError(f"the event store could not write the events: {exc}") from exc
        self.metrics.store_write_latency.observe(time.perf_counter() - start)
        return out


def spec_or_404(s: Services, experiment_id: str) -> ExperimentSpec:
    """The experiment's latest spec, or HTTP 404 (whose message lists no ids)."""
    try:
        return s.registry.get(experiment_id)
    except ExperimentError as exc:
        raise HTTPException(404, "no experiment with this id") from exc


def get_services(request: Request) -> Services:
    """The opened services, or HTTP 503 while the service starts or stops."""
    s: Services | None = request.app.state.services
    if s is None:
        raise HTTPException(503, "the service is starting or shutting down; retry shortly")
    return s


def get_config(request: Request) -> ServeConfig:
    """The configuration the app was created with."""
    config: ServeConfig = request.app.state.config
    return config


def get_metrics(request: Request) -> ServiceMetrics:
    """This app instance's Prometheus metrics."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


Svc = Annotated[Services, Depends(get_services)]
Config = Annotated[ServeConfig, Depends(get_config)]
Metrics = Annotated[ServiceMetrics, Depends(get_metrics)]

ExperimentId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        openapi_examples={"experiment": {"value": "ease-vs-popularity"}},
    ),
]

__all__ = [
    "Choice",
    "Config",
    "DatabaseUnavailableError",
    "ExperimentId",
    "Metrics",
    "Services",
    "Svc",
    "database_problem",
    "get_config",
    "get_metrics",
    "get_services",
    "safe_url",
    "spec_or_404",
    "wait_for_database",
    "wait_for_store",
]
