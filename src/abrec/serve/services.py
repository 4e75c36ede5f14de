"""What the service opens once at start (models, store, writer, registry) and the
FastAPI dependencies through which route handlers reach it and the app's configuration."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam

from abrec.artifacts import ArtifactError, ModelRegistry
from abrec.errors import AbrecError, ConfigError, ExperimentError, StoreError
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec, load_specs
from abrec.monitor.drift import DriftMonitor
from abrec.serve.bandits import BanditUpdater
from abrec.serve.config import ServeConfig
from abrec.serve.engine import Engine
from abrec.serve.metrics import ServiceMetrics
from abrec.serve.monitor import ServiceMonitor
from abrec.serve.sync import Synchronizer
from abrec.store import BatchWriter, Event, EventStore, ExposureRow
from abrec.store.ingest import Outcome
from abrec.store.lease import Lease
from abrec.store.loop_writer import LoopWriter

T = TypeVar("T")

log = logging.getLogger(__name__)


def freeze_heap() -> None:
    """Exempt everything alive now (the loaded models, their id indices, the modules) from
    Python's cyclic garbage collector (`gc.freeze`).

    A full collection walks every tracked object; with a model bundle loaded that is
    hundreds of thousands of objects that never die, and the collector stopped the event
    loop for up to 80 ms every few seconds under load (the p99 of /v1/recommend). Frozen
    objects are still freed by reference counting. Called once the service has opened and
    after a model swap.
    """
    gc.collect()
    gc.freeze()


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


class ReloadRefusedError(AbrecError):
    """A model reload that would break serving (HTTP 409): a running experiment's model is
    missing from the new version, the fallback model is, or no registry is configured."""


def serving_bundle(
    config: ServeConfig, store: EventStore, models: ModelRegistry | None = None
) -> tuple[Path, str | None]:
    """(bundle folder, model version) a process of this config serves at start: the bundle
    folder, or the registry version a reload stored (so a process that starts later serves
    what the others serve), else the promoted one.

    Raises:
        ConfigError: when the registry has nothing to serve.
    """
    if config.model_registry is None:
        assert config.bundle is not None  # ServeConfig requires bundle or model_registry
        return config.bundle, None
    models = models if models is not None else ModelRegistry(config.model_registry)
    version = store.serving_model() or models.promoted()
    if version is None:
        raise ConfigError(
            f"the model registry {config.model_registry} has no promoted version; register "
            "a bundle and promote it (`abrec models register`, `abrec models promote`)"
        )
    return models.get(version).bundle, version


def _first_engine(config: ServeConfig, store: EventStore, models: ModelRegistry | None) -> Engine:
    """The engine a process starts with (see `serving_bundle`)."""
    bundle, version = serving_bundle(config, store, models)
    return Engine.load(bundle, config.fallback_model, version)


def served_model_names(config: ServeConfig, store: EventStore) -> tuple[str, list[str]]:
    """(where the models come from, their names) as a process of this config would serve
    them at start, read from `bundle.json` / the version's metadata without loading them.

    Raises:
        ConfigError: when the bundle folder is not a bundle or nothing can be served.
    """
    if config.model_registry is None:
        assert config.bundle is not None
        meta = config.bundle / "bundle.json"
        if not meta.is_file():
            raise ConfigError(
                f"bundle {config.bundle} is not a model bundle (no bundle.json); build one with "
                "`abrec evaluate --config examples/movielens.toml --save-models runs/bundle`"
            )
        return str(config.bundle), sorted(json.loads(meta.read_text())["models"])
    models = ModelRegistry(config.model_registry)
    version = store.serving_model() or models.promoted()
    if version is None:
        raise ConfigError(
            f"the model registry {config.model_registry} has no promoted version; register "
            "a bundle and promote it (`abrec models register`, `abrec models promote`)"
        )
    return f"model version {version}", models.get(version).models


def prepare_store(config: ServeConfig) -> None:
    """Create the schema and store the TOML experiments once, before several worker
    processes start (so they do not race to create tables); each worker then finds them.

    Raises:
        ConfigError: when an experiment serves a model the served bundle lacks.
    """
    store = EventStore.from_url(config.store_url, table_prefix=config.table_prefix)
    try:
        store.create_schema()
        where, names = served_model_names(config, store)
        if config.experiments is None:
            return
        registry = ExperimentRegistry(store)
        for spec in load_specs(config.experiments):
            missing = [v.model for v in spec.variants if v.model not in names]
            if missing:
                raise ConfigError(
                    f"experiment {spec.id!r} serves model(s) {missing} that are not in the "
                    f"bundle {where} (it has {names})"
                )
            registry.upsert(spec)
    finally:
        store.dispose()


@dataclass
class Services:
    """What the lifespan opens once: models, store, writer, registry, and the thread that
    applies other processes' changes (`abrec.serve.sync`).

    ``engine`` is replaced as a whole by a model reload (one attribute assignment); a
    request reads it once and uses that engine throughout.
    """

    config: ServeConfig
    engine: Engine
    store: EventStore
    writer: BatchWriter
    registry: ExperimentRegistry
    metrics: ServiceMetrics
    bandits: BanditUpdater
    monitor: ServiceMonitor
    models: ModelRegistry | None = None
    sync: Synchronizer | None = None
    loop_writer: LoopWriter | None = None
    _reload_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, config: ServeConfig, metrics: ServiceMetrics) -> Services:
        """Wait for the database (bounded retries), open the store, load the model bundle
        (or the registry's serving version), the writer and the experiments from TOML, and
        start following other processes' changes, the bandit updates and the monitor."""
        wait_for_store(config)
        store = EventStore.from_url(config.store_url, table_prefix=config.table_prefix)
        try:
            store.create_schema()
            token = store.change_token()  # before loading: later changes are applied
            models = ModelRegistry(config.model_registry) if config.model_registry else None
            engine = _first_engine(config, store, models)
            registry = ExperimentRegistry(store)
            if config.experiments is not None:
                for spec in load_specs(config.experiments):
                    missing = [v.model for v in spec.variants if not engine.has_model(v.model)]
                    if missing:
                        where = config.bundle or f"model version {engine.version}"
                        raise ConfigError(
                            f"experiment {spec.id!r} serves model(s) {missing} that are not in "
                            f"the bundle {where} (it has {engine.model_names})"
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
        monitor = ServiceMonitor(config, store, registry, drift, metrics, Lease(store, "monitor"))
        if config.monitor:
            monitor.start()
        services = cls(config, engine, store, writer, registry, metrics, bandits, monitor, models)
        if store.dialect == "postgresql":
            services.loop_writer = LoopWriter(store, writer, max_batch=config.batch.max_batch)
            metrics.collector.loop_writer = services.loop_writer
        services.sync = Synchronizer(
            store, registry, services.follow_model, token=token, poll_s=config.sync_poll_s
        )
        services.sync.start()
        return services

    def close(self) -> None:
        """Stop following changes, the monitor and the bandit updates, flush pending events
        and release the store."""
        try:
            if self.sync is not None:
                self.sync.close()
            self.monitor.close()
            self.bandits.close()
            self.writer.close()
        finally:
            self.store.dispose()

    def reload_model(self, version: str | None = None) -> tuple[Engine, Engine]:
        """Load a registry version (None: the promoted one), swap it in and store it as the
        serving version, so every other process loads it too. Returns (old, new) engines;
        reloading the version being served only stores it again.

        Raises:
            ArtifactError: for an unknown version, or when none is promoted.
            ReloadRefusedError: without a registry, or when the new version lacks the
                fallback model or a model that a running experiment serves (nothing changes).
        """
        if self.models is None:
            raise ReloadRefusedError(
                "this service serves a bundle folder; set model_registry in its config to "
                "reload model versions without a restart"
            )
        with self._reload_lock:
            target = version if version is not None else self.models.promoted()
            if target is None:
                raise ArtifactError(
                    f"the model registry {self.models.root} has no promoted version; name one"
                )
            found = self.models.get(target)
            old = self.engine
            new = old if old.version == target else self._load(found.bundle, target)
            running = [x for x in self.registry.list() if x.status == "running"]
            missing = sorted(
                {
                    f"{x.id}: {v.model}"
                    for x in running
                    for v in x.variants
                    if not new.has_model(v.model)
                }
            )
            if missing:
                raise ReloadRefusedError(
                    f"model version {target} lacks model(s) that running experiments serve "
                    f"({', '.join(missing)}); it has {new.model_names}. Stop those "
                    "experiments first or register a version that has them"
                )
            self.store.set_serving_model(target)  # a store failure changes nothing here
            self._swap(new)
        if new is not old:
            log.info("now serving model version %s (was %s)", target, old.version)
        return old, new

    def _swap(self, new: Engine) -> None:
        """Serve ``new`` (one assignment) and point the drift checks at its models."""
        if new is self.engine:
            return
        self.engine = new
        if self.config.monitor:
            self.monitor.drift = DriftMonitor(new.bundle)
        freeze_heap()

    def _load(self, bundle: Path, version: str) -> Engine:
        try:
            return Engine.load(bundle, self.config.fallback_model, version)
        except ConfigError as exc:
            raise ReloadRefusedError(f"model version {version} cannot be served: {exc}") from exc

    def follow_model(self, version: str) -> None:
        """Serve the version another process stored (called by the `Synchronizer`)."""
        if self.models is None or self.engine.version == version:
            return
        with self._reload_lock:
            if self.engine.version == version:
                return
            new = self._load(self.models.get(version).bundle, version)
            old = self.engine
            self._swap(new)
        log.info(
            "now serving model version %s (was %s; stored by another process)", version, old.version
        )

    def choose(self, experiment: str, unit_id: str, engine: Engine | None = None) -> Choice:
        """What serves a unit in an experiment: its variant, the model(s) and the
        probability of the assignment, or the fallback model and why. ``engine`` is the
        one the request serves with (default: the current one)."""
        engine = engine if engine is not None else self.engine
        try:
            spec = self.registry.get(experiment)
        except ExperimentError:
            return Choice.fallback(engine.fallback_model, "unknown_experiment")
        if spec.status != "running":
            return Choice.fallback(engine.fallback_model, "not_running")
        got = self.registry.assign_with_propensity(experiment, unit_id)
        if got is None:
            return Choice.fallback(engine.fallback_model, "not_assigned")
        variant, propensity = got
        if spec.type == "interleaving":
            models = {v.name: v.model for v in spec.variants}
        else:
            models = {variant: spec.variant(variant).model}
        if not all(engine.has_model(m) for m in models.values()):
            return Choice.fallback(engine.fallback_model, "model_missing")
        if spec.type == "ab":
            propensity = 1.0  # the variant's ranking is deterministic
        return Choice(spec, variant, models, None, propensity)

    async def write(self, events: Sequence[Event | ExposureRow]) -> int:
        """Submit the service's own events (exposures) and wait until they are committed.

        On PostgreSQL the event loop writes them (`LoopWriter`: group commit, one COPY per
        batch); otherwise the `BatchWriter` thread."""
        if not events:
            return 0
        if self.loop_writer is not None:  # exposures reference nothing: it takes them all
            inserted: int = await self._committed(self.loop_writer.submit(events))
            return inserted
        return await self._committed(asyncio.wrap_future(self.writer.submit(events)))

    async def write_checked(self, events: Sequence[Event]) -> list[Outcome]:
        """Submit client events under the ingestion rules; their outcomes once committed
        (batches with clicks or conversions always through the `BatchWriter`, whose
        transaction also reads the exposures they reference)."""
        if not events:
            return []
        if self.loop_writer is not None and self.loop_writer.takes(events):
            return await self._committed(self.loop_writer.submit_checked(events))
        return await self._committed(asyncio.wrap_future(self.writer.submit_checked(events)))

    async def close_loop_writer(self) -> None:
        """Write what the event loop's writer holds and close it (before `close`)."""
        if self.loop_writer is not None:
            await self.loop_writer.close()

    async def _committed(self, pending: Awaitable[T]) -> T:
        """Await a writer submission; any failure but our own errors becomes a StoreError."""
        start = time.perf_counter()
        try:
            out = await pending
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


def services_of(request: Request) -> Services:
    """The opened services, or HTTP 503 while the service starts or stops."""
    s: Services | None = request.app.state.services
    if s is None:
        raise HTTPException(503, "the service is starting or shutting down; retry shortly")
    return s


async def get_services(request: Request) -> Services:
    """`services_of` as a dependency (async, like every dependency here: FastAPI runs a
    plain `def` dependency in a worker thread)."""
    return services_of(request)


async def get_config(request: Request) -> ServeConfig:
    """The configuration the app was created with."""
    config: ServeConfig = request.app.state.config
    return config


async def get_metrics(request: Request) -> ServiceMetrics:
    """This app instance's Prometheus metrics."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


Svc = Annotated[Services, Depends(get_services)]
Config = Annotated[ServeConfig, Depends(get_config)]
Metrics = Annotated[ServiceMetrics, Depends(get_metrics)]

ExperimentId = Annotated[
    str,
    PathParam(
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
    "ReloadRefusedError",
    "Services",
    "Svc",
    "database_problem",
    "freeze_heap",
    "get_config",
    "get_metrics",
    "get_services",
    "prepare_store",
    "safe_url",
    "served_model_names",
    "services_of",
    "spec_or_404",
    "wait_for_database",
    "wait_for_store",
]
