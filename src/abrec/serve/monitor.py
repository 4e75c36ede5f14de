"""The service's background monitor: experiment health and drift, off the request path.

Every `ServeConfig.monitor_interval_s` a daemon thread runs `abrec.monitor.collect` (the
results computation of each running experiment, at most `monitor_max_experiments`, and
the drift checks of their models) and hands the snapshot to the metrics collector
(`abrec.serve.metrics.MonitorCollector`) and to the results endpoint (``drift``). A
failed run is logged and counted (``abrec_monitor_runs_total{outcome="error"}``); the
previous snapshot stays until a run succeeds.
"""

from __future__ import annotations

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

    @property
    def snapshot(self) -> MonitorSnapshot | None:
        """The latest snapshot (None before the first successful run)."""
        return self.metrics.collector.snapshot

    def run_once(self) -> MonitorSnapshot:
        """Compute a snapshot now and publish it (runs never overlap)."""
        with self._run_lock:
            start = time.perf_counter()
            try:
                snap = collect(
                    self.store,
                    self.registry.list(),
                    self.drift,
                    max_experiments=self.config.monitor_max_experiments,
                    window=self.config.drift_window,
                )
            except Exception:
                self.metrics.monitor_runs.labels(outcome="error").inc()
                raise
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
            try:
                self.run_once()
            except Exception:
                log.exception("monitor run failed; the previous snapshot stays published")


__all__ = ["ServiceMonitor"]
