"""What the service opens once at start (models, store, writer, registry) and the
FastAPI dependencies through which route handlers reach it and the app's configuration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from abrec.errors import AbrecError, ConfigError, ExperimentError, StoreError
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec, load_specs
from abrec.serve.config import ServeConfig
from abrec.serve.engine import Engine
from abrec.serve.metrics import ServiceMetrics
from abrec.store import BatchWriter, Event, EventStore


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


def spec_or_404(s: Services, experiment_id: str) -> ExperimentSpec:
    """The experiment's latest spec, or HTTP 404."""
    try:
        return s.registry.get(experiment_id)
    except ExperimentError as exc:
        raise HTTPException(404, f"no experiment {experiment_id!r}: {exc}") from exc


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
    "Config",
    "ExperimentId",
    "Metrics",
    "Services",
    "Svc",
    "get_config",
    "get_metrics",
    "get_services",
    "spec_or_404",
]
