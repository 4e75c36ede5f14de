"""The service's background monitor: experiment health and drift, off the request path.

Every `ServeConfig.monitor_interval_s` a daemon thread runs `abrec.monitor.collect` (the
results computation of each running experiment, at most `monitor_max_experiments`) and,
every `drift_interval_s` (drift over thousands of exposures moves slowly, and its first
run computes each model's reference lists, which costs as much as that many requests),
the drift checks of their models; runs in between keep the last drift checks. It hands
the snapshot to the metrics collector
(`abrec.serve.metrics.MonitorCollector`) and to the results endpoint (``drift``). A
failed run is logged and counted (``abrec_monitor_runs_total{outcome="error"}``); the
previous snapshot stays until a run succeeds.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from abrec.experiment.registry import ExperimentRegistry
from abrec.monitor.drift import DriftMonitor
from abrec.monitor.health import MonitorSnapshot, collect
from abrec.serve.config import ServeConfig
from abrec.serve.metrics import ServiceMetrics
from abrec.store import EventStore

log = logging.getLogger(__name__)


class ServiceMonitor:
    """Runs :meth:`run_once` every ``config.monitor_interval_s`` in a daemon thread."""

    def __init__(
        self,
        config: ServeConfig,
        store: EventStore,
        registry: ExperimentRegistry,
        drift: DriftMonitor | None,
        metrics: ServiceMetrics,
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.drift = drift
        self.metrics = metrics
        self._stop = threading.Event()
        self._run_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_drift = time.monotonic()

    @property
    def snapshot(self) -> MonitorSnapshot | None:
        """The latest snapshot (None before the first successful run)."""
        return self.metrics.collector.snapshot

    def run_once(self, *, drift: bool = True) -> MonitorSnapshot:
        """Compute a snapshot now (with the drift checks unless ``drift`` is False: then the
        previous snapshot's are kept) and publish it. Runs never overlap."""
        with self._run_lock:
            start = time.perf_counter()
            try:
                snap = collect(
                    self.store,
                    self.registry.list(),
                    self.drift if drift else None,
                    max_experiments=self.config.monitor_max_experiments,
                    window=self.config.drift_window,
                )
            except Exception:
                self.metrics.monitor_runs.labels(outcome="error").inc()
                raise
            previous = self.metrics.collector.snapshot
            if drift:
                self._last_drift = time.monotonic()
            elif previous is not None:
                snap = dataclasses.replace(
                    snap, drift=previous.drift, drift_error=previous.drift_error
                )
            self.metrics.collector.snapshot = snap
            self.metrics.monitor_runs.labels(outcome="ok").inc()
            self.metrics.monitor_duration.observe(time.perf_counter() - start)
            return snap

    def start(self) -> None:
        """Start the thread; its first run is one interval after the start."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="abrec-monitor", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread (a run in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.config.monitor_interval_s):
            due = time.monotonic() - self._last_drift >= self.config.drift_interval_s
            try:
                self.run_once(drift=due)
            except Exception:
                log.exception("monitor run failed; the previous snapshot stays published")


__all__ = ["ServiceMonitor"]
