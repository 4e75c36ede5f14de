"""Background writer that groups submitted events into batched, durable transactions."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from abrec.errors import StoreError
from abrec.store.events import Event, ExposureRow
from abrec.store.ingest import Outcome
from abrec.store.sql import EventStore

log = logging.getLogger(__name__)


@dataclass
class _Job:
    events: list[Event | ExposureRow]
    verify: bool = False  # apply the ingestion rules (client events)
    future: Future[Any] = field(default_factory=Future)


_STOP = object()


class WriterHealth:
    """The counters a writer keeps for monitoring (read without locking; each is one
    attribute): ``batches_written`` / ``events_written`` (committed), ``batches_failed`` /
    ``events_failed`` (transactions that failed), ``pending_events`` (submitted, not yet
    committed or failed) and ``last_commit_at`` (``time.time()`` of the last commit, None
    before the first)."""

    def __init__(self) -> None:
        self.batches_written = 0
        self.events_written = 0
        self.batches_failed = 0
        self.events_failed = 0
        self.pending_events = 0
        self.last_commit_at: float | None = None


class BatchWriter(WriterHealth):
    """Group events from many callers into few transactions, acknowledging after commit.

    ``submit`` returns a future resolved with the number of that call's events that
    were newly inserted, only once the batch holding them is committed (or with the
    exception that made the commit fail). asyncio callers use
    ``await asyncio.wrap_future(writer.submit(events))``. ``submit_checked`` applies the
    ingestion rules (`abrec.store.ingest`) to client events and resolves with one
    `Outcome` per event. A batch is checked and inserted in one transaction by this one
    thread, so concurrent requests cannot both claim the same exposure.

    Health counters for monitoring: `WriterHealth`.
    """

    def __init__(
        self, store: EventStore, *, max_batch: int = 500, max_delay_s: float = 0.005
    ) -> None:
        if max_batch < 1:
            raise StoreError(f"max_batch must be >= 1, got {max_batch}")
        if max_delay_s < 0:
            raise StoreError(f"max_delay_s must be >= 0, got {max_delay_s}")
        self.store = store
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._queue: queue.Queue[object] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        super().__init__()
        self._thread = threading.Thread(target=self._run, name="abrec-batch-writer", daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def submit(self, events: Sequence[Event | ExposureRow]) -> Future[int]:
        """Queue events for the next batch; the future resolves after they are committed.

        Only ``event_id`` deduplication applies (for the service's own exposures).
        """
        return self._enqueue(_Job(list(events)), empty=0)

    def submit_checked(self, events: Sequence[Event]) -> Future[list[Outcome]]:
        """Queue client events under the ingestion rules; resolves with one outcome each."""
        return self._enqueue(_Job(list(events), verify=True), empty=[])

    def _enqueue(self, job: _Job, *, empty: Any) -> Future[Any]:
        with self._lock:
            if self._closed:
                raise StoreError("BatchWriter is closed; create a new one to write events")
            if not job.events:
                job.future.set_result(empty)
                return job.future
            self.pending_events += len(job.events)
            self._queue.put(job)
        return job.future

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted before this call is committed."""
        barrier = _Job([])
        with self._lock:
            if self._closed:  # close() already drains everything queued
                self._thread.join(timeout=timeout)
                return
            self._queue.put(barrier)
        barrier.future.result(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush everything pending and stop the writer thread (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout=timeout)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ worker
    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """Gather jobs until ``max_batch`` events or ``max_delay_s`` elapsed; report a stop.

        The thread sleeps through the delay and then takes what was queued, instead of
        waking for every job: under load a wake-up per request (and the GIL hand-offs it
        costs the request threads) was a large part of the write path's CPU. A flush
        barrier or a stop ends the batch at once when it is the first job.
        """
        jobs = [first]
        n = len(first.events)
        stop = False
        if first.events and self.max_delay_s > 0 and n < self.max_batch:
            time.sleep(self.max_delay_s)
        while n < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                # Drain what is already queued so close() writes everything pending.
                continue
            assert isinstance(item, _Job)
            jobs.append(item)
            n += len(item.events)
            if not item.events:  # a flush barrier: write now
                break
        return jobs, stop

    def _write(self, jobs: list[_Job]) -> None:
        events = [ev for job in jobs for ev in job.events]
        verify = [job.verify for job in jobs for _ in job.events]
        try:
            outcomes = self.store.ingest(events, verify=verify) if events else []
        except Exception as exc:
            log.exception("batch of %d events failed", len(events))
            self.batches_failed += 1
            self.events_failed += len(events)
            self._settled(len(events))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self.batches_written += 1
        self.events_written += sum(o.status == "inserted" for o in outcomes)
        if events:
            self.last_commit_at = time.time()
        self._settled(len(events))
        start = 0
        for job in jobs:
            mine = outcomes[start : start + len(job.events)]
            start += len(job.events)
            if not job.future.done():
                if job.verify:
                    job.future.set_result(mine)
                else:
                    job.future.set_result(sum(o.status == "inserted" for o in mine))

    def _settled(self, n: int) -> None:
        with self._lock:
            self.pending_events -= n

    def _run(self) -> None:
        stopping = False
        while True:
            if stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
            else:
                item = self._queue.get()
            if item is _STOP:
                stopping = True
                continue
            assert isinstance(item, _Job)
            jobs, stop = self._collect(item)
            stopping = stopping or stop
            self._write(jobs)
