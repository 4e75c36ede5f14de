"""What several service processes share through the store: the change token, the serving
model version, PostgreSQL change notifications, and insert-if-absent sticky assignments
under real concurrency (each thread on its own connection)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from abrec.experiment.registry import ExperimentRegistry
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
