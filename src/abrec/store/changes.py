"""Waiting for changes other processes made to a shared store (experiments, serving model).

`ChangeListener.wait(timeout)` returns early when PostgreSQL delivers a notification on
the store's `EventStore.change_channel` (``LISTEN``/``NOTIFY``; the store sends one in the
transaction of every experiment save and serving-model change), and otherwise after
``timeout``. On SQLite, which has no notifications, it only sleeps: the caller polls
`EventStore.change_token` after every wait, which is also the safety net on PostgreSQL
(a dropped listening connection is reopened on the next wait, and the poll catches what
was missed meanwhile).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from abrec.store.sql import EventStore

log = logging.getLogger(__name__)


def open_session(store: EventStore) -> Any:
    """A dedicated autocommit psycopg connection to the store's PostgreSQL database (for
    what lives as long as a session: `LISTEN`, advisory locks)."""
    import psycopg

    return psycopg.connect(store.conninfo, autocommit=True, connect_timeout=5)


def close_quietly(conn: Any) -> None:
    """Close a session that may already be broken."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


class ChangeListener:
    """Wait for the store's change notifications (PostgreSQL) or just for a timeout (SQLite).

    Not thread-safe: one thread waits and closes. Setting ``stop`` (shared with the
    caller) ends a sleeping `wait` at once and a listening one within its timeout.
    """

    def __init__(self, store: EventStore, stop: threading.Event | None = None) -> None:
        self.store = store
        self._conn: Any = None
        self._stop = stop if stop is not None else threading.Event()

    @property
    def listening(self) -> bool:
        """Whether a PostgreSQL ``LISTEN`` connection is open."""
        return self._conn is not None

    def _open(self) -> Any:
        import psycopg

        conn = open_session(self.store)
        channel = psycopg.sql.Identifier(self.store.change_channel)
        conn.execute(psycopg.sql.SQL("LISTEN {}").format(channel))
        return conn

    def wait(self, timeout: float) -> bool:
        """Block at most ``timeout`` seconds; True when a notification arrived (all pending
        ones are consumed), False on timeout, on SQLite, or while PostgreSQL is unreachable."""
        if self.store.dialect != "postgresql":
            self._stop.wait(timeout)
            return False
        try:
            if self._conn is None:
                self._conn = self._open()
            got = False
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # drain what else is queued without waiting
                for _ in self._conn.notifies(timeout=0.0):
                    pass
            return got
        except Exception as exc:  # connection lost: fall back to polling, reopen next time
            log.warning("change notifications unavailable (%s); polling instead", exc)
            self._drop()
            self._stop.wait(timeout)
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    def close(self) -> None:
        """Stop listening (idempotent; call it from the waiting thread)."""
        self._drop()


__all__ = ["ChangeListener", "close_quietly", "open_session"]
