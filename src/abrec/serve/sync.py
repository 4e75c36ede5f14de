"""Keeping several service processes over one store in step (`abrec serve --workers N`).

Each process runs one `Synchronizer` thread. It reads the store's change token
(`EventStore.change_token`: the number of stored experiment versions and the serving
model version) after every wait of at most `ServeConfig.sync_poll_s` seconds; PostgreSQL
also wakes it at once through ``LISTEN``/``NOTIFY`` (`abrec.store.changes`). When the
experiment count moved it reloads the `ExperimentRegistry`; when the serving model
version moved it calls ``on_model`` (the service loads that version and swaps its engine).
So an admin change made in one process is served by every other one within about one
poll interval (plus the bundle's load time for a model change).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from abrec.experiment.registry import ExperimentRegistry
from abrec.store import EventStore
from abrec.store.changes import ChangeListener

log = logging.getLogger(__name__)

#: After a failed model load, wait this long before trying the same version again.
MODEL_RETRY_S = 5.0

Token = tuple[int, str | None]


class Synchronizer:
    """The thread that applies other processes' changes to this process's registry and model.

    ``token`` is the change token read before the process loaded its experiments and
    model, so nothing stored after that point is missed.
    """

    def __init__(
        self,
        store: EventStore,
        registry: ExperimentRegistry,
        on_model: Callable[[str], None],
        *,
        token: Token,
        poll_s: float,
    ) -> None:
        self.store = store
        self.registry = registry
        self.on_model = on_model
        self.poll_s = poll_s
        self._token = token
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._listener = ChangeListener(store, self._stop)
        self._thread = threading.Thread(target=self._run, name="abrec-sync", daemon=True)
        self.reloads = 0

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        """Read the change token once and apply what changed since the last read."""
        count, model = self.store.change_token()
        seen_count, seen_model = self._token
        if count != seen_count:
            self.registry.reload()
            self.reloads += 1
        if model is not None and model != seen_model:
            if time.monotonic() < self._retry_at:
                model = seen_model  # not yet: try again after the retry delay
            else:
                try:
                    self.on_model(model)
                except Exception:
                    log.exception("could not load model version %s; retrying later", model)
                    self._retry_at = time.monotonic() + MODEL_RETRY_S
                    model = seen_model
        self._token = (count, model)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.check()
                except Exception as exc:  # the store is down: keep serving, try again
                    log.warning("could not read changes from the store: %s", exc)
                self._listener.wait(self.poll_s)
        finally:
            self._listener.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)


__all__ = ["MODEL_RETRY_S", "Synchronizer"]
