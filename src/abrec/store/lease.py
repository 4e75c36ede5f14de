"""Leadership among the processes that share a store: one of them does a job for all.

`Lease(store, name).held()` is True in at most one process at a time per store and name.
On PostgreSQL the lease is a session advisory lock (``pg_try_advisory_lock``) on a
connection the holder keeps open: it is released when the holder calls `release`, closes,
or dies (the server drops a dead client's session and its locks), and another process
takes it on its next `held()`. Each `held()` of the holder checks that its connection is
still alive, so a holder whose connection broke (a database restart) stops believing it
leads. On SQLite, where a store has one serving process, every `held()` is True.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

from abrec.store.changes import close_quietly, open_session
from abrec.store.sql import EventStore

log = logging.getLogger(__name__)


def lock_key(store: EventStore, name: str) -> int:
    """The advisory lock id of ``name`` in this store (its table prefix): a stable
    signed 64-bit integer, so stores with other prefixes in one database do not collide."""
    text = f"abrec:{store.table_prefix}:{name}".encode()
    high, low = zlib.crc32(text), zlib.adler32(text)
    value = (high << 32) | low
    return value - (1 << 64) if value >= 1 << 63 else value


class Lease:
    """A named lease on a store (see the module docstring). Not thread-safe: one thread
    calls `held` and `release`."""

    def __init__(self, store: EventStore, name: str) -> None:
        self.store = store
        self.name = name
        self.key = lock_key(store, name)
        self._conn: Any = None

    def held(self) -> bool:
        """Whether this process holds the lease now (taking it when it is free)."""
        if self.store.dialect != "postgresql":
            return True
        try:
            if self._conn is not None:
                self._conn.execute("SELECT 1")
                return True
            conn = open_session(self.store)
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if got is not None and got[0]:
                self._conn = conn
                log.info("this process now holds the %s lease", self.name)
                return True
            conn.close()
            return False
        except Exception as exc:  # the connection broke: the lock went with it
            log.warning("the %s lease is not held (%s)", self.name, exc)
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    def release(self) -> None:
        """Give the lease up (closing the connection releases the lock); idempotent."""
        self._drop()


__all__ = ["Lease", "lock_key"]
