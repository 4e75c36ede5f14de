"""What several service processes share through the store: the change token, the serving
model version, PostgreSQL change notifications, and insert-if-absent sticky assignments
under real concurrency (each thread on its own connection)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from abrec.errors import ExperimentError
from abrec.experiment.registry import ExperimentRegistry
from abrec.serve.sync import Synchronizer as _Sync
from abrec.store import EventStore
from abrec.store.changes import ChangeListener

SPEC = {
    "id": "e1",
    "variants": [
        {"name": "a", "weight": 0.5, "model": "m"},
        {"name": "b", "weight": 0.5, "model": "m"},
    ],
}


def test_change_token_moves_with_every_experiment_save_and_model_change(
    store: EventStore,
) -> None:
    assert store.change_token() == (0, None)
    reg = ExperimentRegistry(store)
    reg.create(SPEC)
    assert store.change_token() == (1, None)
    reg.start("e1")
    reg.create({**SPEC, "id": "e2"})
    assert store.change_token() == (3, None)
    store.set_serving_model("00000000000000aa")
    assert store.change_token() == (3, "00000000000000aa")
    store.set_serving_model("00000000000000bb")
    assert store.serving_model() == "00000000000000bb"


def test_reload_sees_another_registrys_changes(store: EventStore) -> None:
    mine, other = ExperimentRegistry(store), ExperimentRegistry(store)
    mine.create(SPEC)
    mine.start("e1")
    other.reload()
    assert other.get("e1").status == "running"
    mine.set_weights("e1", {"a": 0.9, "b": 0.1})
    other.reload()
    assert other.get("e1").weights == pytest.approx([0.9, 0.1])


def test_listener_wakes_on_postgres_notifications_and_sleeps_on_sqlite(
    store: EventStore,
) -> None:
    listener = ChangeListener(store)
    try:
        assert listener.wait(0.05) is False  # nothing happened (opens the LISTEN connection)
        if store.dialect == "postgresql":
            assert listener.listening
        done = threading.Event()

        def change_later() -> None:
            time.sleep(0.2)
            store.set_serving_model("00000000000000cc")
            done.set()

        threading.Thread(target=change_later).start()
        start = time.monotonic()
        woke = listener.wait(5.0)
        elapsed = time.monotonic() - start
        done.wait(5)
        if store.dialect == "postgresql":
            assert woke and elapsed < 2.0  # the notification, not the 5 s timeout
            ExperimentRegistry(store).create(SPEC)
            assert listener.wait(2.0)  # experiment saves notify too
        else:
            assert not woke and elapsed >= 4.9
    finally:
        listener.close()


def test_concurrent_first_assignments_agree(store: EventStore) -> None:
    """Threads assign the same units at once, each proposing its own variant: every
    thread gets back the one stored variant per unit (the first insert wins)."""
    units = [f"u{i}" for i in range(60)]
    n_threads = 6
    barrier = threading.Barrier(n_threads)

    def worker(t: int) -> dict[str, str]:
        barrier.wait()
        order = units if t % 2 else units[::-1]
        return {u: store.save_assignment_row("exp", u, f"v{t}", 0.5)[0] for u in order}

    with ThreadPoolExecutor(n_threads) as pool:
        results = list(pool.map(worker, range(n_threads)))
    stored = store.get_assignments([("exp", u) for u in units])
    for got in results:
        assert got == {u: stored[("exp", u)] for u in units}
    if store.dialect == "postgresql":  # SQLite's one writer lock lets a thread run ahead
        assert len(set(stored.values())) > 1  # the race was real: several threads won units


def test_a_stale_process_cannot_overwrite_another_processes_change(store: EventStore) -> None:
    """Changes are compare-and-set on the stored version: a registry that has not reloaded
    yet applies its change to the latest stored spec, whose rules may refuse it."""
    a, b = ExperimentRegistry(store), ExperimentRegistry(store)
    a.create(SPEC)
    with pytest.raises(ExperimentError, match="already exists"):
        b.create(SPEC)  # b had not seen a's create
    a.start("e1")
    b.reload()
    a.stop("e1")
    assert b.get("e1").status == "running"  # stale until it reloads
    with pytest.raises(ExperimentError, match="stopped"):
        b.set_weights("e1", {"a": 0.9, "b": 0.1})
    with pytest.raises(ExperimentError, match="from 'stopped'"):
        b.stop("e1")
    latest = store.load_experiment("e1")
    assert latest is not None and latest[1]["status"] == "stopped"
    c = ExperimentRegistry(store)
    c.create({**SPEC, "id": "e2", "status": "running"})
    d = ExperimentRegistry(store)
    c.set_weights("e2", {"a": 0.8, "b": 0.2})
    d.set_weights("e2", {"a": 0.3, "b": 0.7})  # d's stale copy is not what it changes
    e2 = ExperimentRegistry(store).get("e2")
    assert e2.weights == pytest.approx([0.3, 0.7]) and e2.status == "running"
    assert store.load_experiment("e2") == (3, e2.model_dump(mode="json"))


def test_synchronizer_applies_other_processes_changes(store: EventStore) -> None:
    mine, other = ExperimentRegistry(store), ExperimentRegistry(store)
    models: list[str] = []
    sync = _Sync(store, mine, models.append, token=store.change_token(), poll_s=0.25)
    sync.start()
    try:
        other.create(SPEC)
        other.start("e1")
        store.set_serving_model("00000000000000dd")
        lag = _until(lambda: "e1" in {x.id for x in mine.list()} and models == ["00000000000000dd"])
        assert mine.get("e1").status == "running" and lag < 1.0
        other.stop("e1")
        assert _until(lambda: mine.get("e1").status == "stopped") < 1.0
        assert models == ["00000000000000dd"]  # called once per change
    finally:
        sync.close()


def _until(check: Callable[[], bool], limit: float = 5.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < limit, "not seen in time"
        time.sleep(0.01)
    return time.monotonic() - start
