"""Prometheus metrics for one app instance (own registry) and the ASGI middleware timing requests.

Request metrics carry no client-supplied id: routes are labelled by their template. The
monitor's series (`MonitorCollector`) carry experiment ids, variant names and model names:
all chosen by admins, never by clients, and bounded: only running experiments, at most
`ServeConfig.monitor_max_experiments` of them (50 by default), their spec's variants, the
bundle's models and the three drift checks. Set `ABREC_METRICS_TOKEN` to close `/metrics`
to readers without that bearer token (docs/security.md). Every series is listed with its
meaning in docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abrec.monitor.health import MonitorSnapshot
from abrec.store.writer import WriterHealth

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class ServiceMetrics:
    """The service's metric families, registered on a private `CollectorRegistry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "abrec_request_latency_seconds",
            "HTTP request latency by route template, method and status class",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_ingested = Counter(
            "abrec_events_ingested_total",
            "Valid events accepted and durably written, by event type",
            ["type"],
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "abrec_events_rejected_total",
            "Events rejected by validation",
            registry=self.registry,
        )
        self.assignments = Counter(
            "abrec_assignments_total",
            "Recommendation requests served by an experiment variant (this instance; the "
            "per-variant totals of the store are abrec_experiment_exposures_total)",
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "abrec_fallback_total",
            "Recommendation requests served by the fallback model, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.store_write_latency = Histogram(
            "abrec_store_write_latency_seconds",
            "Time from submitting events to the batch writer until their commit is acknowledged",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.monitor_runs = Counter(
            "abrec_monitor_runs_total",
            "Runs of the background monitor, by outcome (ok, error)",
            ["outcome"],
            registry=self.registry,
        )
        self.monitor_duration = Histogram(
            "abrec_monitor_duration_seconds",
            "Time one monitor run took (analysis of the running experiments and drift)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=self.registry,
        )
        self.collector = MonitorCollector()
        self.registry.register(self.collector)


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class MonitorCollector(Collector):
    """Exports the latest `MonitorSnapshot` and the batch writer's health at scrape time.

    `snapshot` and `writer` are set by the service (`abrec.serve.monitor`); before that
    the experiment and drift families are exported empty, so every name is always there.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.snapshot: MonitorSnapshot | None = None
        self.writer: WriterHealth | None = None  # the BatchWriter
        self.loop_writer: WriterHealth | None = None  # PostgreSQL: the event loop's writer
        self.clock = clock
        self.started_at = clock()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families are built per scrape from the snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._writer_families()
        yield from self._experiment_families()
        yield from self._drift_families()

    def _writer_families(self) -> Iterator[Metric]:
        writers = [w for w in (self.writer, self.loop_writer) if w is not None]
        now = self.clock()
        failures = CounterMetricFamily(
            "abrec_store_write_failures",
            "Batches of events whose transaction failed (their requests got 503)",
        )
        failures.add_metric([], sum(w.batches_failed for w in writers))
        yield failures
        pending = GaugeMetricFamily(
            "abrec_store_pending_events",
            "Events submitted to the batch writer and not yet committed or failed",
        )
        pending.add_metric([], sum(max(w.pending_events, 0) for w in writers))
        yield pending
        commits = [w.last_commit_at for w in writers if w.last_commit_at is not None]
        last = max(commits) if commits else None
        since = GaugeMetricFamily(
            "abrec_store_seconds_since_last_commit",
            "Seconds since the batch writer last committed events (since start before the "
            "first commit)",
        )
        since.add_metric([], max(0.0, now - (last if last is not None else self.started_at)))
        yield since
        if last is not None:
            ts = GaugeMetricFamily(
                "abrec_store_last_commit_timestamp_seconds",
                "Wall-clock time of the batch writer's last commit (seconds since the epoch)",
            )
            ts.add_metric([], last)
            yield ts

    def _experiment_families(self) -> Iterator[Metric]:
        snap = self.snapshot
        ev = ["experiment", "variant"]
        units = GaugeMetricFamily(
            "abrec_experiment_units", "Exposed units per running experiment and variant", labels=ev
        )
        exposures = CounterMetricFamily(
            "abrec_experiment_exposures",
            "Stored exposures per running experiment and variant (store totals)",
            labels=ev,
        )
        clicks = CounterMetricFamily(
            "abrec_experiment_clicks",
            "Stored clicks per running experiment and variant (store totals)",
            labels=ev,
        )
        srm = GaugeMetricFamily(
            "abrec_experiment_srm_pvalue",
            "p-value of the sample-ratio test of a running experiment (absent until testable)",
            labels=["experiment"],
        )
        guard = GaugeMetricFamily(
            "abrec_experiment_guardrail_breached",
            "1 when the guardrail's always-valid CI lies entirely below 0, else 0",
            labels=["experiment", "treatment", "metric"],
        )
        failed = GaugeMetricFamily(
            "abrec_experiment_analysis_failed",
            "1 when the monitor could not analyse a running experiment (see the log)",
            labels=["experiment"],
        )
        monitored = GaugeMetricFamily(
            "abrec_experiments_monitored", "Running experiments the monitor exports"
        )
        unmonitored = GaugeMetricFamily(
            "abrec_experiments_unmonitored",
            "Running experiments beyond monitor_max_experiments (not exported)",
        )
        last_run = GaugeMetricFamily(
            "abrec_monitor_last_run_timestamp_seconds",
            "Wall-clock end of the last monitor run (seconds since the epoch)",
        )
        if snap is not None:
            for e in snap.experiments:
                failed.add_metric([e.experiment], 1.0 if e.error else 0.0)
                for v in e.variants:
                    units.add_metric([e.experiment, v.variant], v.units)
                    exposures.add_metric([e.experiment, v.variant], v.exposures)
                    clicks.add_metric([e.experiment, v.variant], v.clicks)
                if e.srm_pvalue is not None:
                    srm.add_metric([e.experiment], e.srm_pvalue)
                for g in e.guardrails:
                    guard.add_metric([e.experiment, g.treatment, g.metric], float(g.breached))
            monitored.add_metric([], len(snap.experiments))
            unmonitored.add_metric([], snap.unmonitored)
            last_run.add_metric([], snap.at)
        yield from (units, exposures, clicks, srm, guard, failed, monitored, unmonitored, last_run)

    def _drift_families(self) -> Iterator[Metric]:
        snap = self.snapshot
        labels = ["check", "model"]
        psi = GaugeMetricFamily(
            "abrec_drift_psi", "Population stability index, serving vs training", labels=labels
        )
        ks_stat = GaugeMetricFamily(
            "abrec_drift_ks_statistic",
            "Two-sample KS statistic, serving vs training",
            labels=labels,
        )
        ks_p = GaugeMetricFamily(
            "abrec_drift_ks_pvalue", "Two-sample KS p-value, serving vs training", labels=labels
        )
        alarm = GaugeMetricFamily(
            "abrec_drift_alarm", "1 when the drift alarm rule holds, else 0", labels=labels
        )
        n_serving = GaugeMetricFamily(
            "abrec_drift_serving_samples", "Serving observations of the check", labels=labels
        )
        shift = GaugeMetricFamily(
            "abrec_drift_cosine_shift",
            "1 - cosine between the training and serving centroids of item embeddings",
            labels=["model"],
        )
        if snap is not None and snap.drift is not None:
            for c in snap.drift:
                key = [c.check, c.model]
                n_serving.add_metric(key, c.n_serving)
                if c.psi is None:
                    continue
                psi.add_metric(key, c.psi)
                ks_stat.add_metric(key, _num(c.ks_statistic))
                ks_p.add_metric(key, _num(c.ks_pvalue))
                alarm.add_metric(key, float(c.alarm))
                if c.cosine_shift is not None:
                    shift.add_metric([c.model], c.cosine_shift)
        yield from (psi, ks_stat, ks_p, alarm, n_serving, shift)


class LatencyMiddleware:
    """Pure ASGI middleware observing request latency labelled by the matched route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_latency.labels(
                route=template, method=scope.get("method", ""), status=f"{status[0] // 100}xx"
            ).observe(time.perf_counter() - start)
