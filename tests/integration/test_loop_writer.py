"""The event loop's writer (`abrec.store.loop_writer.LoopWriter`) on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from pg_gate import PG_URL, require_postgres
from test_serve_support import unique_prefix

from abrec.errors import StoreError
from abrec.store import BatchWriter, Event, EventStore, exposure_rows
from abrec.store.loop_writer import LoopWriter

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> Iterator[EventStore]:
    require_postgres(PG_URL)
    s = EventStore.from_url(PG_URL, table_prefix=unique_prefix("loopw"))
    s.create_schema()
    yield s
    s.metadata.drop_all(s.engine)
    s.dispose()


@pytest.fixture
def fallback(store: EventStore) -> Iterator[BatchWriter]:
    with BatchWriter(store, max_delay_s=0.0) as w:
        yield w


def exposures(request_id: str, n: int = 10) -> list[object]:
    return list(
        exposure_rows(
            request_id=request_id,
            experiment="exp",
            variant="treatment",
            unit_id=f"u-{request_id}",
            item_ids=[f"i{j}" for j in range(n)],
            propensities=[1.0] * n,
            sources=[None] * n,
            scores=[0.5 - 0.01 * j for j in range(n)],
            model_version="v1",
            ts=T0,
        )
    )


def view(event_id: str, **changes: object) -> Event:
    fields: dict[str, object] = {
        "event_id": event_id,
        "ts": T0,
        "experiment": "exp",
        "variant": "treatment",
        "unit_id": "u1",
        "type": "view",
        "item_id": "i1",
        "position": 0,
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


def stored_ids(store: EventStore) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(store.events.c.event_id)).scalars())


def test_concurrent_requests_share_transactions_and_every_row_is_stored(
    store: EventStore, fallback: BatchWriter
) -> None:
    writer = LoopWriter(store, fallback)
    ids = [uuid.uuid4().hex for _ in range(60)]

    async def main() -> list[int]:
        try:
            return list(await asyncio.gather(*(writer.submit(exposures(r)) for r in ids)))  # type: ignore[arg-type]
        finally:
            await writer.close()

    assert asyncio.run(main()) == [10] * 60
    assert stored_ids(store) == sorted(f"{r}:{p}" for r in ids for p in range(10))
    assert 1 <= writer.batches_written < 60  # group commit: fewer transactions than requests
    assert writer.events_written == 600 and writer.pending_events == 0
    assert writer.last_commit_at is not None and writer.batches_failed == 0
    with store.engine.connect() as conn:  # every column as exposure_rows built it
        row = conn.execute(
            sa.select(store.events).where(store.events.c.event_id == f"{ids[0]}:3")
        ).one()
    assert (row.type, row.item_id, row.position, row.model_version) == ("exposure", "i3", 3, "v1")
    assert row.score == pytest.approx(0.47) and row.propensity == 1.0 and row.ts == T0


def test_max_batch_splits_batches(store: EventStore, fallback: BatchWriter) -> None:
    writer = LoopWriter(store, fallback, max_batch=20)

    async def main() -> None:
        try:
            await asyncio.gather(*(writer.submit(exposures(str(i))) for i in range(9)))  # type: ignore[arg-type]
        finally:
            await writer.close()

    asyncio.run(main())
    assert len(stored_ids(store)) == 90
    assert writer.batches_written >= 5  # at most 2 requests of 10 per transaction


def test_stored_ids_go_to_the_lookup_path_with_the_same_outcomes(
    store: EventStore, fallback: BatchWriter
) -> None:
    """An id already stored fails the COPY as a whole; the batch is then classified by the
    BatchWriter: identical replays are duplicates, other content is a conflict, new ids
    are inserted, and nothing is stored twice."""
    writer = LoopWriter(store, fallback)
    first = exposures("r1", 3)
    odd = "a\\b'\"é\\N"  # text COPY escaping: backslash, quotes, non-ASCII, a literal \N

    async def main() -> tuple[int, int, list[str], list[str]]:
        try:
            a = await writer.submit(first)  # type: ignore[arg-type]
            b = await writer.submit([first[1], *exposures("r2", 2)])  # type: ignore[list-item]
            c = await writer.submit_checked([view("v1"), view("v2", item_id=odd)])
            d = await writer.submit_checked(
                [view("v1"), view("v2", item_id=odd), view("v2", item_id="other"), view("v3")]
            )
            return a, b, [o.status for o in c], [o.status for o in d]
        finally:
            await writer.close()

    a, b, c, d = asyncio.run(main())
    assert (a, b) == (3, 2)
    assert c == ["inserted", "inserted"]
    assert d == ["duplicate", "duplicate", "conflict", "inserted"]
    with store.engine.connect() as conn:  # the COPY stored the text exactly
        got = conn.execute(
            sa.select(store.events.c.item_id).where(store.events.c.event_id == "v2")
        ).scalar()
    assert got == odd
    assert stored_ids(store) == sorted(["r1:0", "r1:1", "r1:2", "r2:0", "r2:1", "v1", "v2", "v3"])
    assert fallback.batches_written >= 2  # the two batches with stored ids went there
    assert writer.pending_events == 0


def test_a_killed_connection_is_replaced_and_the_batch_retried(
    store: EventStore, fallback: BatchWriter
) -> None:
    writer = LoopWriter(store, fallback)

    async def main() -> int:
        try:
            await writer.submit(exposures("before"))  # type: ignore[arg-type]
            pid = writer._conn.info.backend_pid
            with store.engine.connect() as conn:
                assert conn.execute(sa.text(f"SELECT pg_terminate_backend({pid})")).scalar()
            return await writer.submit(exposures("after"))  # type: ignore[arg-type]
        finally:
            await writer.close()

    assert asyncio.run(main()) == 10
    assert len(stored_ids(store)) == 20 and writer.batches_failed == 0


def test_a_failing_store_fails_the_callers_and_counts_it(
    store: EventStore, fallback: BatchWriter
) -> None:
    writer = LoopWriter(store, fallback)
    store.events.drop(store.engine)

    async def main() -> None:
        try:
            with pytest.raises(StoreError, match="could not write"):
                await writer.submit(exposures("x", 4))  # type: ignore[arg-type]
        finally:
            await writer.close()

    asyncio.run(main())
    assert (writer.batches_failed, writer.events_failed, writer.pending_events) == (1, 4, 0)
    store.events.create(store.engine)


def test_refuses_clicks_and_other_backends(
    store: EventStore, fallback: BatchWriter, tmp_path: object
) -> None:
    writer = LoopWriter(store, fallback)
    click = view("c1", type="click", request_id="r1")

    async def main() -> None:
        with pytest.raises(StoreError, match="BatchWriter"):
            await writer.submit_checked([click])
        await writer.close()
        with pytest.raises(StoreError, match="closed"):
            await writer.submit(exposures("late"))  # type: ignore[arg-type]

    asyncio.run(main())
    assert not LoopWriter.takes([click]) and LoopWriter.takes([view("v")])
    sqlite = EventStore.from_url(f"sqlite:///{tmp_path}/e.db")
    with pytest.raises(StoreError, match="COPY"):
        LoopWriter(sqlite, fallback)
    sqlite.dispose()


def test_close_writes_what_is_pending(store: EventStore, fallback: BatchWriter) -> None:
    writer = LoopWriter(store, fallback)

    async def main() -> None:
        tasks = [asyncio.create_task(writer.submit(exposures(str(i)))) for i in range(5)]  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the submissions are queued
        await writer.close()
        assert [t.result() for t in tasks] == [10] * 5

    asyncio.run(main())
    assert len(stored_ids(store)) == 50
