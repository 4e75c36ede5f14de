"""`ExperimentRegistry.needs_store` / `in_memory`: whether an assignment lookup would
query the store (the service keeps such lookups off its event loop)."""

from __future__ import annotations

from abrec.experiment.registry import ExperimentRegistry
from abrec.store import EventStore

SPEC = {
    "id": "exp",
    "status": "running",
    "variants": [
        {"name": "control", "weight": 0.5, "model": "popularity"},
        {"name": "treatment", "weight": 0.5, "model": "ease"},
    ],
}


def test_the_hint_follows_the_sticky_cache(store: EventStore) -> None:
    reg = ExperimentRegistry(store)
    reg.create(SPEC)
    assert reg.needs_store("exp", "u1")  # never assigned: read (or write) the store
    assert not reg.in_memory([("exp", "u1")])
    reg.assign("exp", "u1")
    assert not reg.needs_store("exp", "u1")  # cached now
    assert reg.in_memory([("exp", "u1"), ("unknown", "u2")])
    assert not reg.in_memory([("exp", "u1"), ("exp", "u2")])
    # a fresh registry (another process) has an empty cache, whatever is stored
    other = ExperimentRegistry(store)
    assert other.needs_store("exp", "u1")
    assert other.assign("exp", "u1") == reg.assign("exp", "u1")
    assert not other.needs_store("exp", "u1")
    # nothing to look up for an unknown or stopped experiment
    assert not reg.needs_store("unknown", "u1")
    reg.stop("exp")
    assert not reg.needs_store("exp", "u9")
