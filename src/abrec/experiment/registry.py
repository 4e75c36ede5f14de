"""Experiment registry: lifecycle (draft → running → stopped), weights and sticky assignment."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from abrec.errors import ExperimentError
from abrec.experiment.assignment import choose_variation, gb_hash, get_bucket_ranges
from abrec.experiment.spec import INTERLEAVED, ExperimentSpec, parse_spec
from abrec.store.sql import EventStore, VersionConflictError

_CACHE_SIZE = 100_000
#: Attempts of a compare-and-set change before giving up (each loses only to another save).
_CAS_ATTEMPTS = 8

log = logging.getLogger(__name__)


class ExperimentRegistry:
    """Experiments persisted in the event store, with GrowthBook-compatible assignment.

    Stored sticky assignments never change, so they are cached in memory (LRU).
    Specs are validated on write with the same rules as on read (`parse_spec`); a stored
    spec that no longer loads (written by an older version, or edited by hand) is skipped
    with a warning naming its id and the reason, and listed in `skipped`, so one bad row
    never keeps the service from starting. Saving a valid spec under that id replaces it.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._specs: dict[str, ExperimentSpec] = {}
        self._sticky: OrderedDict[tuple[str, str], tuple[str, float | None]] = OrderedDict()
        self.skipped: dict[str, str] = {}
        self.reload()

    def reload(self) -> None:
        """Re-read the latest version of every spec from the store, skipping invalid ones.

        Changes other processes stored become visible here (the service calls this when
        the store announces a change). It holds the registry lock while it reads, so a
        change this process saves meanwhile is never overwritten by an older snapshot.
        """
        with self._lock:
            self._reload()

    def _reload(self) -> None:
        specs: dict[str, ExperimentSpec] = {}
        skipped: dict[str, str] = {}
        for raw in self.store.load_experiments():
            try:
                spec = parse_spec(raw)
            except ExperimentError as exc:
                ident = raw.get("id") if isinstance(raw, dict) else None
                key = ascii(ident)[:140]
                reason = str(exc)
                skipped[key] = reason
                log.warning("skipping stored experiment %s: it does not load: %s", key, reason)
                continue
            specs[spec.id] = spec
        self._specs = specs
        self.skipped = skipped

    # ------------------------------------------------------------------ lifecycle
    def create(self, spec: ExperimentSpec | dict[str, Any]) -> ExperimentSpec:
        """Register a new experiment (any status; usually ``draft``).

        Raises:
            ExperimentError: when the id exists or the spec is invalid.
        """
        if not isinstance(spec, ExperimentSpec):
            spec = parse_spec(spec)
        exists = ExperimentError(
            f"experiment {spec.id!r} already exists; choose another id or update it"
        )
        with self._lock:
            if spec.id in self._specs:
                raise exists
            # Another process may have created it since our last reload; a stored version
            # that no longer loads (see `skipped`) is replaced.
            stored = self.store.load_experiment(spec.id)
            expected = 0
            if stored is not None:
                try:
                    parse_spec(stored[1])
                except ExperimentError:
                    expected = stored[0]
                else:
                    self._reload()
                    raise exists
            try:
                self.store.save_experiment(spec.model_dump(mode="json"), expected_version=expected)
            except VersionConflictError:
                self._reload()
                raise exists from None
            self._specs[spec.id] = spec
            self.skipped.pop(ascii(spec.id)[:140], None)
        return spec

    def upsert(self, spec: ExperimentSpec) -> ExperimentSpec:
        """Create the experiment, or keep the stored one when the id exists (for config loading)."""
        with self._lock:
            if spec.id in self._specs:
                return self._specs[spec.id]
            self._save(spec)
        return spec

    def get(self, exp_id: str) -> ExperimentSpec:
        """The current spec of an experiment.

        Raises:
            ExperimentError: for an unknown id.
        """
        with self._lock:
            spec = self._specs.get(exp_id)
        if spec is None:
            raise ExperimentError(f"unknown experiment {exp_id[:128]!r}")
        return spec

    def list(self) -> list[ExperimentSpec]:
        """All experiments, ordered by id."""
        with self._lock:
            return [self._specs[k] for k in sorted(self._specs)]

    def start(self, exp_id: str) -> ExperimentSpec:
        """Move a draft experiment to running."""
        return self._transition(exp_id, "running", allowed_from=("draft",))

    def stop(self, exp_id: str) -> ExperimentSpec:
        """Stop a draft or running experiment (stopped is final)."""
        return self._transition(exp_id, "stopped", allowed_from=("draft", "running"))

    def set_weights(self, exp_id: str, weights: dict[str, float]) -> ExperimentSpec:
        """Change the traffic split; units already assigned keep their variant when sticky.

        Raises:
            ExperimentError: for unknown/missing variants, bad weights or a stopped experiment.
        """

        def change(spec: ExperimentSpec) -> ExperimentSpec:
            if spec.status == "stopped":
                raise ExperimentError(f"experiment {exp_id!r} is stopped; its weights are final")
            names = spec.variant_names
            if set(weights) != set(names):
                raise ExperimentError(
                    f"give a weight for every variant of {exp_id!r}: expected {sorted(names)}, "
                    f"got {sorted(weights)}"
                )
            variants = [{**v.model_dump(), "weight": weights[v.name]} for v in spec.variants]
            return spec.with_updates(variants=variants)

        return self._change(exp_id, change)

    def _transition(
        self, exp_id: str, status: str, *, allowed_from: tuple[str, ...]
    ) -> ExperimentSpec:
        def change(spec: ExperimentSpec) -> ExperimentSpec:
            if spec.status not in allowed_from:
                raise ExperimentError(
                    f"cannot move experiment {exp_id!r} from {spec.status!r} to {status!r}; "
                    f"allowed from {list(allowed_from)}"
                )
            return spec.with_updates(status=status)

        return self._change(exp_id, change)

    def _change(
        self, exp_id: str, change: Callable[[ExperimentSpec], ExperimentSpec]
    ) -> ExperimentSpec:
        """Apply ``change`` to the latest *stored* spec and save the result as the next
        version (compare-and-set), so a change made meanwhile by another process is never
        overwritten: on a conflict the change is applied again to the newer version (whose
        rules may then refuse it, e.g. weights of an experiment another process stopped).

        Raises:
            ExperimentError: for an unknown id or a change the rules refuse.
        """
        with self._lock:
            self.get(exp_id)
            for _ in range(_CAS_ATTEMPTS):
                stored = self.store.load_experiment(exp_id)
                if stored is None:  # pragma: no cover - versions are never deleted
                    raise ExperimentError(f"unknown experiment {exp_id[:128]!r}")
                version, raw = stored
                new = change(parse_spec(raw))
                try:
                    self.store.save_experiment(
                        new.model_dump(mode="json"), expected_version=version
                    )
                except VersionConflictError:
                    continue
                self._specs[exp_id] = new
                return new
        raise ExperimentError(
            f"experiment {exp_id!r} is being changed by other writers; retry the change"
        )

    def _save(self, spec: ExperimentSpec) -> None:
        self.store.save_experiment(spec.model_dump(mode="json"))
        self._specs[spec.id] = spec

    # ------------------------------------------------------------------ assignment
    def bucket(self, exp_id: str, unit_id: str) -> str | None:
        """The hash-based variant of a unit under the current weights (ignores stickiness).

        Interleaving experiments show every unit within coverage the merged list, so their
        one "variant" is `INTERLEAVED`.
        """
        found = self._bucket(self.get(exp_id), unit_id)
        return None if found is None else found[0]

    @staticmethod
    def _bucket(spec: ExperimentSpec, unit_id: str) -> tuple[str, float] | None:
        """(variant, its probability under the current weights), None outside coverage."""
        n = gb_hash(spec.hash_seed, unit_id, spec.hash_version)
        if n is None:  # pragma: no cover - hash_version is validated to be 1 or 2
            return None
        idx = choose_variation(
            n, get_bucket_ranges(len(spec.variants), spec.coverage, spec.weights)
        )
        if idx < 0:
            return None
        if spec.type == "interleaving":
            return INTERLEAVED, 1.0
        return spec.variants[idx].name, spec.variants[idx].weight

    def assign(self, exp_id: str, unit_id: str) -> str | None:
        """Variant for a unit; None when the experiment is not running or the unit is outside coverage.

        With ``sticky`` the first assignment is stored and reused after weight changes.

        Raises:
            ExperimentError: for an unknown experiment or an empty unit id.
        """
        got = self.assign_with_propensity(exp_id, unit_id)
        return None if got is None else got[0]

    def needs_store(self, exp_id: str, unit_id: str) -> bool:
        """Whether `assign_with_propensity` would query the store now: a running sticky
        experiment whose assignment of this unit is not cached. Callers use it to keep
        database round trips off the event loop; the answer is a hint (the cache may
        change in between), never a correctness condition."""
        with self._lock:
            spec = self._specs.get(exp_id)
            if spec is None or spec.status != "running":
                return False
        return not self.in_memory([(exp_id, unit_id)])

    def in_memory(self, pairs: Iterable[tuple[str, str]]) -> bool:
        """Whether `assignments(pairs)` would answer without the store (every pair of a
        sticky experiment is cached); a hint like `needs_store`."""
        with self._lock:
            for exp_id, unit_id in pairs:
                spec = self._specs.get(exp_id)
                sticky = spec is not None and spec.sticky and bool(unit_id)
                if sticky and (exp_id, unit_id) not in self._sticky:
                    return False
        return True

    def assign_with_propensity(self, exp_id: str, unit_id: str) -> tuple[str, float | None] | None:
        """(variant, the probability the unit had of getting it when first assigned), or None
        as :meth:`assign`. The probability is the variant's weight at that moment (1 for an
        interleaving experiment); sticky assignments store it with the variant (None for
        assignments stored before probabilities were logged).
        """
        if not unit_id:
            raise ExperimentError("unit_id must be a non-empty string")
        spec = self.get(exp_id)
        if spec.status != "running":
            return None
        if not spec.sticky:
            return self._bucket(spec, unit_id)
        key = (exp_id, unit_id)
        with self._lock:
            cached = self._sticky.get(key)
            if cached is not None:
                self._sticky.move_to_end(key)
                return cached
        stored = self.store.get_assignment_row(exp_id, unit_id)
        if stored is None:
            found = self._bucket(spec, unit_id)
            if found is None:
                return None
            stored = self.store.save_assignment_row(exp_id, unit_id, *found)
        with self._lock:
            self._sticky[key] = stored
            if len(self._sticky) > _CACHE_SIZE:
                self._sticky.popitem(last=False)
        return stored

    def assignments(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Variants already given to many (experiment, unit_id) pairs, with at most one store query.

        Sticky experiments answer from the in-memory cache, then from one batched
        store lookup for the misses; a unit never assigned is left out. Non-sticky
        experiments store nothing, so their answer is the unit's hash bucket under
        the current weights (left out outside coverage and while still a draft).
        Unknown experiments are left out.
        """
        keys = list(dict.fromkeys(pairs))
        out: dict[tuple[str, str], str] = {}
        misses: list[tuple[str, str]] = []
        with self._lock:
            specs = dict(self._specs)
            for key in keys:
                spec = specs.get(key[0])
                if spec is None or not key[1]:
                    continue
                if not spec.sticky:
                    if spec.status != "draft":
                        variant = self.bucket(key[0], key[1])
                        if variant is not None:
                            out[key] = variant
                    continue
                cached = self._sticky.get(key)
                if cached is not None:
                    self._sticky.move_to_end(key)
                    out[key] = cached[0]
                else:
                    misses.append(key)
        if misses:
            stored = self.store.get_assignment_rows(misses)
            with self._lock:
                for key, row in stored.items():
                    out[key] = row[0]
                    self._sticky[key] = row
                    self._sticky.move_to_end(key)
                while len(self._sticky) > _CACHE_SIZE:
                    self._sticky.popitem(last=False)
        return out
