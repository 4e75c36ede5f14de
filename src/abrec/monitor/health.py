"""Health of the running experiments and the drift of their models, as one snapshot.

:func:`collect` reuses the results computation (:func:`abrec.experiment.analysis.analyze`)
for every running experiment, at most ``max_experiments`` of them (by id; the rest are
counted in ``unmonitored``), so the gauges and the results endpoint never disagree. The
service's monitor thread (``abrec.serve.monitor``) exports the snapshot as Prometheus
metrics; ``abrec monitor`` prints it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import TypeAdapter

from abrec.experiment.analysis import analyze
from abrec.experiment.spec import ExperimentSpec
from abrec.monitor.drift import DEFAULT_WINDOW, DriftMonitor
from abrec.stats.drift import DriftCheck
from abrec.stats.results import Num, OptNum, ToDictMixin
from abrec.store.sql import EventStore

log = logging.getLogger(__name__)

#: Running experiments exported with per-experiment labels (bounded label cardinality).
MAX_EXPERIMENTS = 50


@dataclass(frozen=True)
class VariantHealth(ToDictMixin):
    """Stored totals of one variant (from the results' variant summary)."""

    variant: str
    units: int
    exposures: float
    clicks: float


@dataclass(frozen=True)
class GuardrailHealth(ToDictMixin):
    """One guardrail of one treatment: breached when its always-valid CI lies below 0."""

    treatment: str
    metric: str
    breached: bool
    low: Num
    high: Num


@dataclass(frozen=True)
class ExperimentHealth(ToDictMixin):
    """What the alerts need of one running experiment (``error`` when it was not analysed)."""

    experiment: str
    type: str
    variants: tuple[VariantHealth, ...]
    srm_pvalue: OptNum
    guardrails: tuple[GuardrailHealth, ...]
    error: str | None = None


@dataclass(frozen=True)
class MonitorSnapshot(ToDictMixin):
    """One monitor run: ``at`` is its wall-clock end time (seconds since the epoch)."""

    at: float
    experiments: tuple[ExperimentHealth, ...]
    unmonitored: int
    drift: tuple[DriftCheck, ...] | None
    drift_error: str | None = None

    def to_text(self) -> str:
        """The snapshot as JSON text that keeps NaN and ±inf (`from_text` reads it back
        equal), for the processes that read the monitor leader's snapshot from the store."""
        return json.dumps(_SNAPSHOT.dump_python(self), allow_nan=True)

    @classmethod
    def from_text(cls, text: str) -> MonitorSnapshot:
        """Inverse of `to_text`."""
        return _SNAPSHOT.validate_python(json.loads(text))

    def drift_for(self, models: Sequence[str]) -> tuple[DriftCheck, ...] | None:
        """The drift checks of ``models`` (None when drift was not computed)."""
        if self.drift is None:
            return None
        wanted = set(models)
        return tuple(c for c in self.drift if c.model in wanted)


_SNAPSHOT: TypeAdapter[MonitorSnapshot] = TypeAdapter(MonitorSnapshot)


def experiment_health(store: EventStore, spec: ExperimentSpec) -> ExperimentHealth:
    """SRM, guardrails and totals of one experiment, from :func:`analyze`."""
    res = analyze(store, spec)
    variants = tuple(
        VariantHealth(
            v.variant,
            int(v.n),
            float(v.totals.get("exposures", 0.0)),
            float(v.totals.get("clicks", 0.0)),
        )
        for v in res.variants
    )
    srm = None
    if res.srm is not None and math.isfinite(res.srm.p_value):
        srm = float(res.srm.p_value)
    guards = tuple(
        GuardrailHealth(c.treatment, g.metric, not g.passed, g.low, g.high)
        for c in res.comparisons
        for g in c.guardrails
    )
    return ExperimentHealth(spec.id, spec.type, variants, srm, guards)


def running(specs: Sequence[ExperimentSpec], cap: int) -> tuple[list[ExperimentSpec], int]:
    """The first ``cap`` running experiments by id, and how many more are running."""
    live = sorted((s for s in specs if s.status == "running"), key=lambda s: s.id)
    return live[:cap], max(0, len(live) - cap)


def collect(
    store: EventStore,
    specs: Sequence[ExperimentSpec],
    drift: DriftMonitor | None,
    *,
    max_experiments: int = MAX_EXPERIMENTS,
    window: int = DEFAULT_WINDOW,
) -> MonitorSnapshot:
    """Analyse the running experiments and compute drift (None without a DriftMonitor).

    A failure of one experiment's analysis is kept in its ``error`` (and logged); a drift
    failure in ``drift_error``; neither stops the rest.
    """
    live, unmonitored = running(specs, max_experiments)
    health = []
    for spec in live:
        try:
            health.append(experiment_health(store, spec))
        except Exception as exc:  # one bad experiment must not hide the others
            log.warning("monitor: cannot analyse experiment %r: %s", spec.id, exc)
            health.append(ExperimentHealth(spec.id, spec.type, (), None, (), str(exc)[:300]))
    checks: tuple[DriftCheck, ...] | None = None
    drift_error = None
    if drift is not None:
        try:
            checks = tuple(drift.checks(store, live, window))
        except Exception as exc:
            log.warning("monitor: drift checks failed: %s", exc)
            drift_error = str(exc)[:300]
    return MonitorSnapshot(time.time(), tuple(health), unmonitored, checks, drift_error)


__all__ = [
    "MAX_EXPERIMENTS",
    "ExperimentHealth",
    "GuardrailHealth",
    "MonitorSnapshot",
    "VariantHealth",
    "collect",
    "experiment_health",
    "running",
]
