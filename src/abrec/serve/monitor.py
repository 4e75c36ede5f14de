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

One monitor per store: with several processes (`abrec serve --workers N`, or several hosts
over one PostgreSQL) only the holder of the store's ``monitor`` lease
(`abrec.store.lease.Lease`) computes; it stores each snapshot in the store
(`EventStore.save_document`) and the others publish the stored one (`follow`) on the
same interval, so every process exports the same gauges while the database runs the
analysis once instead of once per process (a run is ~0.5 s of PostgreSQL per 180k events).
If the leader dies, another process takes the lease on its next interval.
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
from abrec.store.lease import Lease

log = logging.getLogger(__name__)

#: The store document holding the monitor leader's latest snapshot.
SNAPSHOT_DOCUMENT = "monitor_snapshot"


class ServiceMonitor:
    """Runs :meth:`run_once` every ``config.monitor_interval_s`` in a daemon thread."""

    def __init__(
        self,
        config: ServeConfig,
        store: EventStore,
        registry: ExperimentRegistry,
        drift: DriftMonitor | None,
        metrics: ServiceMetrics,
        lease: Lease | None = None,
    ) -> None:
        self.config = config
        self.lease = lease
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
        previous snapshot's are kept) and publish it; with a lease, also store it for the
        other processes. Runs never overlap."""
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
            if self.lease is not None:  # under the run lock: stored in the order computed
                try:
                    self.store.save_document(SNAPSHOT_DOCUMENT, snap.to_text())
                except Exception as exc:  # the others keep their last snapshot meanwhile
                    log.warning("could not store the monitor snapshot for others: %s", exc)
        return snap

    def follow(self) -> MonitorSnapshot | None:
        """Publish the snapshot the leader stored when it is newer than ours; the one
        published (None while the leader has stored none)."""
        text = self.store.document(SNAPSHOT_DOCUMENT)
        if text is None:
            return self.snapshot
        stored = MonitorSnapshot.from_text(text)
        current = self.snapshot
        if current is None or stored.at > current.at:
            self.metrics.collector.snapshot = stored
            return stored
        return current

    def start(self) -> None:
        """Start the thread; its first run is one interval after the start."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="abrec-monitor", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread (a run in progress finishes first) and give the lease up."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
        if self.lease is not None:
            self.lease.release()

    def _loop(self) -> None:
        while not self._stop.wait(self.config.monitor_interval_s):
            due = time.monotonic() - self._last_drift >= self.config.drift_interval_s
            try:
                if self.lease is None or self.lease.held():
                    self.run_once(drift=due)
                else:
                    self.follow()
            except Exception:
                log.exception("monitor run failed; the previous snapshot stays published")


__all__ = ["ServiceMonitor"]
