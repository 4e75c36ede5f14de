"""The batch writer's health counters that the ingestion alerts read."""

from __future__ import annotations

import time

import pytest

from abrec.serve.metrics import MonitorCollector
from abrec.store import BatchWriter, Event, EventStore


def _exposure(i: int) -> Event:
    return Event(
        event_id=f"e{i}",
        experiment="x",
        variant="a",
        unit_id=f"u{i}",
        type="exposure",
        item_id="i1",
        position=0,
        request_id=f"r{i}",
        score=0.5,
    )


def _samples(collector: MonitorCollector) -> dict[str, float]:
    return {s.name: s.value for fam in collector.collect() for s in fam.samples if not s.labels}


def test_failures_pending_and_last_commit(store_url: str, table_prefix: str) -> None:
    store = EventStore.from_url(store_url, table_prefix=table_prefix)  # no schema yet
    writer = BatchWriter(store, max_batch=10, max_delay_s=0.0)
    collector = MonitorCollector()
    collector.writer = writer
    try:
        with pytest.raises(Exception, match="ingest events"):
            writer.submit([_exposure(0), _exposure(1)]).result(timeout=30)
        assert (writer.batches_failed, writer.events_failed) == (1, 2)
        assert writer.pending_events == 0 and writer.last_commit_at is None
        got = _samples(collector)
        assert got["abrec_store_write_failures_total"] == 1
        assert got["abrec_store_pending_events"] == 0
        assert "abrec_store_last_commit_timestamp_seconds" not in got
        store.create_schema()
        before = time.time()
        assert writer.submit([_exposure(2)]).result(timeout=30) == 1
        assert writer.last_commit_at is not None and before <= writer.last_commit_at <= time.time()
        got = _samples(collector)
        assert got["abrec_store_last_commit_timestamp_seconds"] == writer.last_commit_at
        assert 0 <= got["abrec_store_seconds_since_last_commit"] < 30
        assert got["abrec_store_write_failures_total"] == 1
        assert store.count("x") == 1
    finally:
        writer.close()
        if store.dialect == "postgresql":
            store.metadata.drop_all(store.engine)
        store.dispose()
