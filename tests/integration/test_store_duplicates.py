"""A duplicate ``event_id`` inside one batch: the first occurrence is stored, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from abrec.store import Event, EventStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _event(event_id: str, n: int) -> Event:
    """Events that differ in every content field, so any mix-up of rows shows."""
    return Event(
        event_id=event_id,
        ts=T0 + timedelta(seconds=n),
        experiment="exp",
        variant=f"v{n}",
        unit_id=f"u{n}",
        type="click",
        item_id=f"i{n}",
        position=n,
        value=float(n) + 0.5,
        request_id=f"r{n}",
    )


def _stored(store: EventStore) -> dict[str, dict[str, object]]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(store.events)).mappings().all()
    return {r["event_id"]: dict(r) for r in rows}


def _content(e: Event) -> dict[str, object]:
    return {k: v for k, v in e.model_dump().items() if k != "ts"}


def _same(row: dict[str, object], e: Event) -> bool:
    ts = row["ts"]
    assert isinstance(ts, datetime)
    if ts.tzinfo is None:  # SQLite hands back naive UTC
        ts = ts.replace(tzinfo=UTC)
    return {k: row[k] for k in _content(e)} == _content(e) and ts == e.ts


def test_first_occurrence_in_a_batch_wins_append_ids(store: EventStore) -> None:
    first, second, third = _event("dup", 1), _event("dup", 2), _event("dup", 3)
    other = _event("solo", 4)
    inserted = store.append_ids([first, other, second, third])
    assert inserted == {"dup", "solo"}
    rows = _stored(store)
    assert set(rows) == {"dup", "solo"}
    assert _same(rows["dup"], first), rows["dup"]
    assert _same(rows["solo"], other)


def test_first_occurrence_in_a_batch_wins_append(store: EventStore) -> None:
    batch = [_event("x", 7), _event("y", 8), _event("x", 9), _event("y", 10)]
    assert store.append(batch) == 2
    rows = _stored(store)
    assert _same(rows["x"], batch[0]) and _same(rows["y"], batch[1])
    # a later batch never overwrites: the stored first occurrence stays
    assert store.append([_event("x", 11)]) == 0
    assert _same(_stored(store)["x"], batch[0])


def test_unverified_batch_is_deduplicated_against_stored_and_within_the_batch(
    store: EventStore,
) -> None:
    """The service's own events (no lookup first; on PostgreSQL one autocommitted
    statement): a stored id and a repeat inside the batch are duplicates, not rewritten."""
    a = _event("a", 1)
    assert store.append([a]) == 1
    b, b_again, a_again = _event("b", 2), _event("b", 3), _event("a", 4)
    out = store.ingest([a_again, b, b_again], verify=[False, False, False])
    assert [o.status for o in out] == ["duplicate", "inserted", "duplicate"]
    stored = _stored(store)
    assert set(stored) == {"a", "b"}
    assert _same(stored["a"], a) and _same(stored["b"], b)


def test_exposure_rows_are_stored_like_events_and_only_unverified(store: EventStore) -> None:
    import pytest

    from abrec.errors import StoreError
    from abrec.store import exposure_rows

    rows = exposure_rows(
        request_id="req1",
        experiment="exp",
        variant="treatment",
        unit_id="u1",
        item_ids=["a", "b", "c"],
        propensities=[1.0, 1.0, 1.0],
        sources=[None, None, None],
        ts=T0,
    )
    assert [o.status for o in store.ingest(rows, verify=[False] * 3)] == ["inserted"] * 3
    assert [o.status for o in store.ingest(rows, verify=[False] * 3)] == ["duplicate"] * 3
    stored = _stored(store)
    for r in rows:
        as_event = Event.model_validate(dict(r))
        assert _same(stored[r.event_id], as_event)
    with pytest.raises(StoreError, match="unverified ExposureRows"):
        store.ingest(rows[:1], verify=[True])


def _view(event_id: str, n: int, **changes: object) -> Event:
    """A verified event that references no exposure."""
    fields: dict[str, object] = {
        "event_id": event_id,
        "ts": T0 + timedelta(seconds=n),
        "experiment": "exp",
        "variant": "v",
        "unit_id": f"u{n}",
        "type": "view",
        "item_id": f"i{n}",
        "position": n,
        "value": float(n) + 0.25,
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


def test_verified_batch_without_references_is_classified_against_stored_ids(
    store: EventStore,
) -> None:
    """Fresh ids are inserted; a stored id is a duplicate (same content) or a conflict
    (other content, not written), the rest of its batch inserted. (These are the
    outcomes the service's LoopWriter must match when it hands a batch over.)"""
    # v1 twice (an identical repeat); v2 with backslash, quotes, non-ASCII, a literal \N
    fresh = [_view("v1", 1), _view("v2", 2, item_id="a\\b'\"é\\N"), _view("v1", 1)]
    assert [o.status for o in store.ingest(fresh)] == ["inserted", "inserted", "duplicate"]
    later = [_view("v3", 3), _view("v1", 1), _view("v2", 2, value=9.0), _view("v4", 4)]
    later[1:1] = [_view("v2", 2, item_id="a\\b'\"é\\N")]  # the same content again
    out = store.ingest(later)
    assert [o.status for o in out] == ["inserted", "duplicate", "duplicate", "conflict", "inserted"]
    stored = _stored(store)
    assert set(stored) == {"v1", "v2", "v3", "v4"}
    assert _same(stored["v2"], fresh[1])  # the conflicting content was not written
    assert _same(stored["v3"], later[0]) and _same(stored["v4"], later[4])


def test_a_batch_conflicting_with_itself_keeps_the_first(store: EventStore) -> None:
    out = store.ingest([_view("w", 1), _view("w", 1, value=2.0), _view("x", 2)])
    assert [o.status for o in out] == ["inserted", "conflict", "inserted"]
    assert _same(_stored(store)["w"], _view("w", 1))
