"""Prometheus metrics for one app instance (own registry) and the ASGI middleware timing requests.

`/metrics` is public, so no label carries an experiment id, a variant name or any other
client-supplied id: routes are labelled by their template.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
            "Recommendation requests served by an experiment variant (no id labels: "
            "/metrics is public; per-variant counts are in the results)",
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
