"""Recomputes the weights of running bandit experiments from the store, periodically.

Every ``bandit.update_every_s`` seconds a running bandit experiment's per-arm totals
(units, exposures, clicks) are read from the store and Thompson sampling
(`abrec.bandit.thompson_weights`) gives the new split; it is saved as a new version of the
spec (`ExperimentRegistry.set_weights`), so units assigned later are bucketed under it
(and log its probability) while units already assigned keep their arm.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib

import numpy as np

from abrec.bandit import thompson_weights
from abrec.errors import AbrecError
from abrec.experiment.registry import ExperimentRegistry
from abrec.experiment.spec import ExperimentSpec
from abrec.store import EventStore

log = logging.getLogger(__name__)

#: Weights that move less than this (in every arm) are not saved as a new version.
MIN_CHANGE = 1e-3


def bandit_weights(store: EventStore, spec: ExperimentSpec) -> dict[str, float]:
    """Thompson-sampling weights of a bandit experiment from its stored totals.

    The draws are seeded by the experiment id and its current totals, so the same data
    give the same weights in every process.
    """
    sums = store.aggregate(spec.id, [(), ("exposures",), ("clicks",)])
    names = spec.variant_names
    units = np.array([sums.get(n, {}).get((), 0.0) for n in names])
    trials = np.array([sums.get(n, {}).get(("exposures",), 0.0) for n in names])
    successes = np.array([sums.get(n, {}).get(("clicks",), 0.0) for n in names])
    key = f"{spec.id}|{units.tolist()}|{trials.tolist()}|{successes.tolist()}"
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    w = thompson_weights(successes, trials, units, spec.bandit_settings, rng)
    return {n: float(x) for n, x in zip(names, w, strict=True)}


def update_bandit(registry: ExperimentRegistry, exp_id: str) -> ExperimentSpec:
    """Recompute and save one bandit experiment's weights (when they moved); its spec."""
    spec = registry.get(exp_id)
    if spec.type != "bandit" or spec.status != "running":
        return spec
    new = bandit_weights(registry.store, spec)
    old = dict(zip(spec.variant_names, spec.weights, strict=True))
    if max(abs(new[n] - old[n]) for n in new) < MIN_CHANGE:
        return spec
    return registry.set_weights(exp_id, new)


class BanditUpdater:
    """A daemon thread that keeps every running bandit experiment's weights current."""

    def __init__(self, registry: ExperimentRegistry, tick_s: float = 0.5) -> None:
        self.registry = registry
        self.tick_s = tick_s
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="abrec-bandits", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_once(self, now: float | None = None) -> list[str]:
        """Update the bandits whose period has passed; the ids updated."""
        now = time.monotonic() if now is None else now
        done = []
        for spec in self.registry.list():
            if spec.type != "bandit" or spec.status != "running":
                continue
            if now - self._last.get(spec.id, -np.inf) < spec.bandit_settings.update_every_s:
                continue
            self._last[spec.id] = now
            try:
                update_bandit(self.registry, spec.id)
            except AbrecError as exc:  # a store hiccup: keep the old weights, retry later
                log.warning("could not update the weights of bandit %r: %s", spec.id, exc)
                continue
            done.append(spec.id)
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.run_once()
