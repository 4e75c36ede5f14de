"""Monitoring: experiment health (SRM, guardrails, totals) and model drift from the store.

`abrec.monitor.health.collect` builds one `MonitorSnapshot`; the service's monitor thread
exports it as Prometheus metrics (`abrec.serve.monitor`) and `abrec monitor` prints it.
See docs/operations.md.
"""

from abrec.monitor.drift import DriftMonitor, item_embeddings
from abrec.monitor.health import (
    MAX_EXPERIMENTS,
    ExperimentHealth,
    GuardrailHealth,
    MonitorSnapshot,
    VariantHealth,
    collect,
)

__all__ = [
    "MAX_EXPERIMENTS",
    "DriftMonitor",
    "ExperimentHealth",
    "GuardrailHealth",
    "MonitorSnapshot",
    "VariantHealth",
    "collect",
    "item_embeddings",
]
