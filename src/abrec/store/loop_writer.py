"""Event batches written from the asyncio event loop (PostgreSQL): group commit, no thread.

The service's hottest write is the k exposures of every `/v1/recommend`. Handing each
request's rows to the `BatchWriter` thread costs thread wake-ups, cross-thread future
callbacks and GIL hand-offs that, under load, were most of the write path's CPU. The
`LoopWriter` instead writes from the event loop that serves the requests, over its own
psycopg `AsyncConnection`:

- Group commit: a request's events join the pending batch. When no write is in flight
  the batch is written at once; otherwise it is written when the write in flight
  returns. Batches grow with the load and no request waits for a timer.
- A batch is one transaction with one ``COPY``; a caller's future resolves only after
  the commit (the same acknowledgement contract as the `BatchWriter`).
- It takes only events that reference no exposure (the service's own exposures, client
  views and covariates): their outcomes follow from the batch alone when none of the ids
  is stored yet. When one is, the COPY fails as a whole and writes nothing, and the
  batch is handed to the `BatchWriter` (`fallback`), whose lookup path classifies
  duplicates and conflicts.
- A broken connection is replaced and the batch retried once (a retry after a commit
  whose reply was lost finds its ids stored and becomes duplicates, never a second
  copy); a second failure fails the batch's callers (the service answers 503).

Its health counters are the `BatchWriter`'s (`abrec.store.writer.WriterHealth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from abrec.errors import StoreError
from abrec.store.events import Event, ExposureRow
from abrec.store.ingest import Ledger, Outcome, decide, needs_exposure
from abrec.store.sql import EventStore
from abrec.store.writer import BatchWriter, WriterHealth

log = logging.getLogger(__name__)


@dataclass
class _Job:
    events: list[Event | ExposureRow]
    verify: bool
    future: asyncio.Future[Any]


class LoopWriter(WriterHealth):
    """Write event batches from the running event loop with one COPY per batch (PostgreSQL).

    Use it from one event loop. ``submit`` / ``submit_checked`` are coroutines with the
    results of `BatchWriter.submit` / `BatchWriter.submit_checked`.
    """

    def __init__(self, store: EventStore, fallback: BatchWriter, *, max_batch: int = 500) -> None:
        if store.dialect != "postgresql":
            raise StoreError(
                f"LoopWriter writes with PostgreSQL's COPY; this store is {store.dialect} "
                "(use the BatchWriter)"
            )
        if max_batch < 1:
            raise StoreError(f"max_batch must be >= 1, got {max_batch}")
        self.store = store
        self.fallback = fallback
        self.max_batch = max_batch
        self._jobs: list[_Job] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None  # psycopg.AsyncConnection, opened on first use
        self._closed = False
        self._columns = store.column_names
        self._copy_sql = store.copy_sql
        super().__init__()

    @staticmethod
    def takes(events: Sequence[Event | ExposureRow]) -> bool:
        """Whether these events can go through the loop writer (none references an exposure)."""
        return not any(isinstance(e, Event) and needs_exposure(e) for e in events)

    async def submit(self, events: Sequence[Event | ExposureRow]) -> int:
        """Write the service's own events (deduplicated on ``event_id`` only); the number
        newly inserted, once committed."""
        inserted: int = await self._enqueue(events, verify=False, empty=0)
        return inserted

    async def submit_checked(self, events: Sequence[Event]) -> list[Outcome]:
        """Write client events under the ingestion rules; one outcome each, once committed."""
        outcomes: list[Outcome] = await self._enqueue(events, verify=True, empty=[])
        return outcomes

    async def close(self) -> None:
        """Write what is pending, then close the connection (idempotent)."""
        self._closed = True
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    # ------------------------------------------------------------------ internals
    async def _enqueue(
        self, events: Sequence[Event | ExposureRow], *, verify: bool, empty: Any
    ) -> Any:
        if self._closed:
            raise StoreError("LoopWriter is closed; the service is shutting down")
        if not events:
            return empty
        if not self.takes(events):
            raise StoreError(
                "clicks and conversions reference exposures and are checked against the "
                "store: submit them to the BatchWriter"
            )
        loop = asyncio.get_running_loop()
        job = _Job(list(events), verify, loop.create_future())
        self._jobs.append(job)
        self.pending_events += len(job.events)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await job.future

    def _take(self) -> list[_Job]:
        """The next batch: queued jobs up to ``max_batch`` events (at least one job)."""
        n = 0
        for i, job in enumerate(self._jobs):
            if i and n + len(job.events) > self.max_batch:
                batch, self._jobs = self._jobs[:i], self._jobs[i:]
                return batch
            n += len(job.events)
        batch, self._jobs = self._jobs, []
        return batch

    async def _run(self) -> None:
        while self._jobs:
            await self._write(self._take())

    async def _write(self, jobs: list[_Job]) -> None:
        events = [e for job in jobs for e in job.events]
        flags = [job.verify for job in jobs for _ in job.events]
        outcomes, rows = decide(events, flags, {}, Ledger([]))
        n = len(events)
        try:
            copied = await self._copy(rows)
        except Exception as exc:
            log.exception("batch of %d events failed", n)
            self.batches_failed += 1
            self.events_failed += n
            self.pending_events -= n
            error = exc if isinstance(exc, StoreError) else StoreError(_one_line(exc))
            for job in jobs:
                _settle(job.future, exception=error)
            return
        self.pending_events -= n
        if not copied:  # an id is stored already: the lookup path classifies the batch
            for job in jobs:
                self._hand_over(job)
            return
        self.batches_written += 1
        self.events_written += len(rows)
        self.last_commit_at = time.time()
        start = 0
        for job in jobs:
            mine = outcomes[start : start + len(job.events)]
            start += len(job.events)
            if job.verify:
                _settle(job.future, result=mine)
            else:
                _settle(job.future, result=sum(o.status == "inserted" for o in mine))

    def _hand_over(self, job: _Job) -> None:
        """Resolve the job with the `BatchWriter`'s answer for it."""
        done: asyncio.Future[Any]
        if job.verify:
            checked = [e for e in job.events if isinstance(e, Event)]
            done = asyncio.wrap_future(self.fallback.submit_checked(checked))
        else:
            done = asyncio.wrap_future(self.fallback.submit(job.events))

        def relay(fut: asyncio.Future[Any]) -> None:
            if fut.cancelled():
                _settle(job.future, exception=StoreError("the event store write was cancelled"))
            elif fut.exception() is not None:
                _settle(job.future, exception=fut.exception())
            else:
                _settle(job.future, result=fut.result())

        done.add_done_callback(relay)

    async def _copy(self, rows: list[dict[str, Any]]) -> bool:
        """COPY `rows` in one transaction; False (nothing written) when an id is stored.
        A broken connection is replaced and the batch retried once."""
        import psycopg

        if not rows:
            return True
        names = self._columns
        for attempt in (1, 2):
            conn = await self._connection()
            try:
                async with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(self._copy_sql) as copy,
                ):
                    for row in rows:
                        await copy.write_row([row[c] for c in names])
                return True
            except psycopg.errors.UniqueViolation:
                return False
            except psycopg.OperationalError:
                await self._reset()
                if attempt == 2:
                    raise
                log.warning("event store connection lost; reconnecting and retrying the batch")
        raise AssertionError("unreachable")

    async def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.store.conninfo, connect_timeout=5
            )
        return self._conn

    async def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing to release
                await conn.close()


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, exception: BaseException | None = None
) -> None:
    """Resolve a caller's future unless its request was cancelled meanwhile."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _one_line(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"event store could not write the events (postgresql): {type(exc).__name__}: {first}; "
        "check that the database is reachable and the schema exists (create_schema())"
    )


__all__ = ["LoopWriter"]
