"""Event store on real SQLite and PostgreSQL: idempotency, durability, SQL aggregates, batching."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from abrec.errors import StoreError
from abrec.store import BatchWriter, Event, EventStore

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def ev(i: int | str, unit: str, kind: str = "exposure", variant: str = "a", **kw: object) -> Event:
    return Event(
        event_id=f"e{i}",
        ts=kw.pop("ts", T0),  # type: ignore[arg-type]
        experiment=kw.pop("experiment", "exp"),  # type: ignore[arg-type]
        variant=variant,
        unit_id=unit,
        type=kind,
        **kw,  # type: ignore[arg-type]
    )


def test_schema_is_idempotent_and_sqlite_is_wal_full(store: EventStore) -> None:
    store.create_schema()  # second call is a no-op
    assert store.count() == 0
    if store.dialect == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_append_is_idempotent_across_and_within_batches(store: EventStore) -> None:
    batch = [ev(i, f"u{i % 3}") for i in range(10)]
    assert store.append(batch) == 10
    assert store.append(batch) == 0  # a retried batch creates no duplicates
    assert store.count() == 10
    dup = [ev(100, "u1"), ev(100, "u1"), ev(101, "u2"), ev(5, "u2")]
    assert store.append(dup) == 2  # e100 once, e101; e5 already stored
    assert store.count("exp") == 12
    assert store.count("other") == 0
    assert store.append([]) == 0


def test_first_write_wins_and_events_are_never_updated(store: EventStore) -> None:
    store.append([ev(1, "u1", "click", value=1.0)])
    store.append([ev(1, "u1", "click", value=99.0)])
    with store.engine.connect() as conn:
        value = conn.execute(sa.select(store.events.c.value)).scalar_one()
    assert value == 1.0
    assert not hasattr(store, "delete") and not hasattr(store, "update")


def test_acknowledged_events_visible_to_a_new_connection(store_url: str, store: EventStore) -> None:
    store.append([ev(i, "u") for i in range(5)])
    other = EventStore.from_url(store_url, table_prefix=store.table_prefix)
    try:
        assert other.count() == 5
    finally:
        other.dispose()


def test_acknowledged_events_survive_a_killed_process(store_url: str, store: EventStore) -> None:
    code = f"""
import os, sys
from datetime import datetime, timezone
from abrec.store import BatchWriter, Event, EventStore
s = EventStore.from_url({store_url!r}, table_prefix={store.table_prefix!r})
w = BatchWriter(s, max_batch=50, max_delay_s=0.002)
futs = [w.submit([Event(event_id=f"k{{i}}", experiment="exp", variant="a", unit_id=f"u{{i}}",
                        type="exposure")]) for i in range(200)]
acked = sum(f.result() for f in futs)
print(acked, flush=True)
os._exit(9)  # die without closing anything: only committed data may remain
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 9, out.stderr
    assert int(out.stdout.strip()) == 200
    assert store.count() == 200


def test_timestamps_are_stored_in_utc(store: EventStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    store.append([ev(1, "u", ts=datetime(2024, 5, 1, 14, 0, tzinfo=plus2))])
    store.append([ev(2, "u", "click", ts=datetime(2024, 5, 1, 13, 0, tzinfo=UTC))])
    frame = store.unit_frame("exp")
    assert frame["first_ts"][0] == np.datetime64("2024-05-01T12:00:00")


def _random_events(rng: np.random.Generator, n_units: int) -> list[Event]:
    out: list[Event] = []
    k = 0
    for u in range(n_units):
        variant = "a" if u % 2 else "b"
        n_exp = int(rng.integers(0, 5))  # some units never exposed
        n_click = int(rng.binomial(n_exp, 0.3)) if n_exp else int(rng.integers(0, 2))
        n_conv = int(rng.binomial(n_click, 0.5))
        for kind, n in (("exposure", n_exp), ("click", n_click), ("conversion", n_conv)):
            for _ in range(n):
                out.append(ev(k, f"u{u}", kind, variant))
                k += 1
        if u % 3:  # two thirds of units carry a pre-experiment covariate
            out.append(ev(k, f"u{u}", "covariate", variant, value=float(rng.normal(2, 1))))
            k += 1
        out.append(ev(k, f"u{u}", "pageview", variant))  # unknown types are stored, ignored
        k += 1
    return out


def test_aggregate_matches_numpy(store: EventStore) -> None:
    """SQL sums of per-unit products equal the same sums computed from the raw events."""
    rng = np.random.default_rng(7)
    events = _random_events(rng, 300)
    assert store.append(events) == len(events)
    terms = [
        (),
        ("exposures",),
        ("clicks",),
        ("conversions",),
        ("clicks", "clicks"),
        ("exposures", "exposures"),
        ("clicks", "exposures"),
        ("conversions", "conversions"),
    ]
    cov_terms = [(), ("covariate",), ("covariate", "covariate"), ("covariate", "clicks")]
    cov_terms += [("covariate", "exposures"), ("clicks",), ("clicks", "clicks")]
    sums = store.aggregate("exp", terms)
    cov = store.aggregate("exp", cov_terms, require="covariate")
    assert set(sums) == {"a", "b"} and set(cov) == {"a", "b"}
    for variant in ("a", "b"):
        units: dict[str, dict[str, float]] = {}
        for e in events:
            if e.variant != variant:
                continue
            d = units.setdefault(e.unit_id, {"e": 0, "c": 0, "v": 0, "x": np.nan})
            if e.type == "exposure":
                d["e"] += 1
            elif e.type == "click":
                d["c"] += 1
            elif e.type == "conversion":
                d["v"] += 1
            elif e.type == "covariate":
                d["x"] = float(e.value)  # type: ignore[arg-type]
        rows = [d for d in units.values() if d["e"] > 0]
        e_ = np.array([d["e"] for d in rows], dtype=float)
        c = np.array([d["c"] for d in rows], dtype=float)
        v = np.array([d["v"] for d in rows], dtype=float)
        x = np.array([d["x"] for d in rows], dtype=float)
        m = ~np.isnan(x)
        want = [len(rows), e_.sum(), c.sum(), v.sum(), (c * c).sum(), (e_ * e_).sum()]
        want += [(c * e_).sum(), (v * v).sum()]
        np.testing.assert_allclose([sums[variant][t] for t in terms], want, rtol=1e-12)
        want_cov = [m.sum(), x[m].sum(), (x[m] ** 2).sum(), (x[m] * c[m]).sum()]
        want_cov += [(x[m] * e_[m]).sum(), c[m].sum(), (c[m] ** 2).sum()]
        np.testing.assert_allclose([cov[variant][t] for t in cov_terms], want_cov, rtol=1e-9)


def test_aggregate_rejects_unknown_columns(store: EventStore) -> None:
    with pytest.raises(StoreError, match="unknown per-unit column"):
        store.aggregate("exp", [("clicks", "bogus")])


def test_unit_frame(store: EventStore) -> None:
    store.append(
        [
            ev(1, "u1", "exposure", "a", ts=T0 + timedelta(seconds=5)),
            ev(2, "u1", "exposure", "a", ts=T0 + timedelta(seconds=1)),
            ev(3, "u1", "click", "a"),
            ev(4, "u2", "exposure", "b", ts=T0),
            ev(5, "u2", "covariate", "b", value=3.5),
            ev(6, "u3", "click", "b"),
            ev(7, "u9", "exposure", "a", experiment="other"),
        ]
    )
    f = store.unit_frame("exp")
    assert list(f["unit_id"]) == ["u1", "u2", "u3"]
    assert list(f["variant"]) == ["a", "b", "b"]
    assert list(f["exposures"]) == [2, 1, 0]
    assert list(f["clicks"]) == [1, 0, 1]
    assert list(f["conversions"]) == [0, 0, 0]
    assert np.isnan(f["covariate"][0]) and f["covariate"][1] == 3.5
    assert f["first_ts"].dtype == np.dtype("datetime64[us]")
    assert f["first_ts"][0] == np.datetime64("2024-05-01T12:00:00")
    empty = store.unit_frame("nothing")
    assert len(empty["unit_id"]) == 0 and store.aggregate("nothing", [()]) == {}


def test_experiments_are_versioned(store: EventStore) -> None:
    assert store.load_experiments() == []
    assert store.save_experiment({"id": "b", "status": "draft"}) == 1
    assert store.save_experiment({"id": "a", "status": "draft"}) == 1
    assert store.save_experiment({"id": "b", "status": "running"}) == 2
    assert store.load_experiments() == [
        {"id": "a", "status": "draft"},
        {"id": "b", "status": "running"},
    ]
    with pytest.raises(StoreError):
        store.save_experiment({"status": "draft"})


def test_assignments_insert_if_absent(store: EventStore) -> None:
    assert store.get_assignment("exp", "u1") is None
    assert store.save_assignment("exp", "u1", "a") == "a"
    assert store.save_assignment("exp", "u1", "b") == "a"  # sticky: first wins
    assert store.get_assignment("exp", "u1") == "a"
    assert store.get_assignment("other", "u1") is None


def test_batch_writer_concurrent_submitters(store: EventStore) -> None:
    writer = BatchWriter(store, max_batch=64, max_delay_s=0.01)
    results: list[int] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        futs = [writer.submit([ev(f"{t}-{i}-{j}", f"u{t}") for j in range(3)]) for i in range(40)]
        # a retried submission of already-stored ids inserts nothing
        futs.append(writer.submit([ev(f"{t}-0-0", f"u{t}")]))
        got = [f.result(timeout=60) for f in futs]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    writer.close()
    assert sum(results) == 6 * 40 * 3
    assert store.count() == 6 * 40 * 3
    assert writer.batches_written < 6 * 41  # submissions were grouped into transactions


def test_batch_writer_close_flushes_pending_and_is_idempotent(store: EventStore) -> None:
    writer = BatchWriter(store, max_batch=10_000, max_delay_s=5.0)  # would wait 5 s
    futs = [writer.submit([ev(i, "u")]) for i in range(25)]
    writer.close()
    writer.close()
    assert all(f.done() for f in futs)
    assert sum(f.result() for f in futs) == 25
    assert store.count() == 25
    with pytest.raises(StoreError, match="closed"):
        writer.submit([ev(99, "u")])
    writer.flush()  # no-op after close


def test_batch_writer_flush_and_duplicate_ids_in_one_batch(store: EventStore) -> None:
    with BatchWriter(store, max_batch=1000, max_delay_s=1.0) as writer:
        f1 = writer.submit([ev(1, "u"), ev(2, "u")])
        f2 = writer.submit([ev(2, "u"), ev(3, "u")])  # e2 duplicates f1's
        f3 = writer.submit([])
        writer.flush(timeout=30)
        assert f1.done() and f2.done()
        assert (f1.result(), f2.result(), f3.result()) == (2, 1, 0)
        assert store.count() == 3


def test_batch_writer_reports_failures(store_url: str, table_prefix: str) -> None:
    s = EventStore.from_url(store_url, table_prefix=table_prefix + "x")  # no schema created
    writer = BatchWriter(s, max_delay_s=0.0)
    try:
        fut = writer.submit([ev(1, "u")])
        with pytest.raises(StoreError, match="create_schema"):
            fut.result(timeout=30)
    finally:
        writer.close()
        s.dispose()


def test_bad_urls_and_inputs(store: EventStore) -> None:
    with pytest.raises(StoreError, match="in-memory"):
        EventStore.from_url("sqlite://")
    with pytest.raises(StoreError, match="unsupported"):
        EventStore.from_url("mysql://x@localhost/db")
    with pytest.raises(StoreError, match="table_prefix"):
        EventStore.from_url("sqlite:///x.db", table_prefix="Bad-Prefix")
    with pytest.raises(StoreError, match="Event objects"):
        store.append([{"event_id": "x"}])  # type: ignore[list-item]
    assert store.count() == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"ts": datetime(2024, 1, 1)},  # naive timestamp
        {"value": float("nan")},
        {"value": float("inf")},
        {"position": -1},
        {"type": "Click"},
        {"type": ""},
        {"event_id": ""},
        {"event_id": "x" * 129},
        {"unit_id": ""},
        {"extra_field": 1},
        {"type": "covariate"},  # covariate without value
    ],
)
def test_event_validation(bad: dict[str, object]) -> None:
    base: dict[str, object] = {
        "event_id": "e1",
        "experiment": "exp",
        "variant": "a",
        "unit_id": "u",
        "type": "click",
    }
    with pytest.raises(ValidationError):
        Event(**{**base, **bad})  # type: ignore[arg-type]


def test_event_defaults() -> None:
    e = Event(event_id="e", experiment="x", variant="a", unit_id="u", type="conversion")
    assert e.ts.tzinfo is not None and e.ts.utcoffset() == timedelta(0)
    assert e.item_id is None and e.position is None and e.value is None
    assert Event.model_validate_json(e.model_dump_json()) == e
