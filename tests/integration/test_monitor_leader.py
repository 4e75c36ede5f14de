"""One monitor per store: the `monitor` lease on PostgreSQL, and followers that publish the
leader's stored snapshot.

Two services (separate apps, one PostgreSQL table prefix) run their monitor threads every
0.5 s: only the lease holder computes (its ``abrec_monitor_runs_total`` grows, the other's
stays 0), and both publish the same snapshot. When the leader stops, the other takes the
lease and computes. The lease itself: one holder per store and name, released on close
and when the server ends the holder's session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from pg_gate import PG_URL, require_postgres
from test_serve_support import build_bundle, unique_prefix, write_config

from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.store import EventStore
from abrec.store.lease import Lease, lock_key

pytestmark = [pytest.mark.postgres]


def until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.05)


def test_lease_has_one_holder_per_store_and_name() -> None:
    require_postgres()
    store = EventStore.from_url(PG_URL, table_prefix=unique_prefix("lease"))
    other = EventStore.from_url(PG_URL, table_prefix=unique_prefix("lease"))
    a, b = Lease(store, "monitor"), Lease(store, "monitor")
    try:
        assert lock_key(store, "monitor") != lock_key(other, "monitor")
        assert lock_key(store, "monitor") != lock_key(store, "other")
        assert a.held() and not b.held() and a.held()
        assert Lease(store, "other").held() and Lease(other, "monitor").held()
        a.release()
        assert b.held() and not a.held()
        with psycopg.connect(store.conninfo, autocommit=True) as admin:
            ended = admin.execute(  # a bigint advisory lock: classid high, objid low bits
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND ((classid::bigint << 32) | objid::bigint) = %s",
                (lock_key(store, "monitor"),),
            ).fetchall()
            assert ended == [(True,)]
        assert not b.held()  # its session is gone, and the lock with it
        assert a.held() and not b.held()
    finally:
        a.release()
        b.release()
        store.dispose()
        other.dispose()


def runs(thread: ServiceThread) -> float:
    """Successful monitor runs of one service (its own Prometheus counter)."""
    registry = thread.app.state.metrics.registry
    return float(registry.get_sample_value("abrec_monitor_runs_total", {"outcome": "ok"}) or 0)


def test_only_the_lease_holder_runs_the_monitor_and_the_other_publishes_its_snapshot(
    tmp_path: Path,
) -> None:
    require_postgres()
    prefix = unique_prefix("lead")
    bundle, _ = build_bundle(tmp_path / "bundle")
    cfg = ServeConfig.from_toml(
        write_config(tmp_path, PG_URL, bundle, table_prefix=prefix, monitor_interval_s=0.5)
    )
    store = EventStore.from_url(PG_URL, table_prefix=prefix)
    first = ServiceThread(cfg).start()
    second = ServiceThread(cfg).start()
    try:
        with httpx.Client(base_url=first.url) as c:
            for u in range(20):
                body = {"unit_id": f"u{u}", "experiment": "exp1", "k": 3}
                assert c.post("/v1/recommend", json=body).status_code == 200
        monitors = [t.app.state.services.monitor for t in (first, second)]
        until(
            lambda: (
                all(m.snapshot is not None for m in monitors) and runs(first) + runs(second) >= 3
            )
        )
        leader, follower = (first, second) if runs(first) else (second, first)
        assert runs(follower) == 0  # it never computed...
        lead_m, follow_m = (t.app.state.services.monitor for t in (leader, follower))
        until(lambda: follow_m.snapshot.at == lead_m.snapshot.at)  # ...yet publishes the same
        assert follow_m.snapshot.to_text() == lead_m.snapshot.to_text()
        units = {v.variant: v.units for e in follow_m.snapshot.experiments for v in e.variants}
        assert sum(units.values()) > 0
        scrape = httpx.get(f"{follower.url}/metrics").text
        assert "abrec_experiment_srm_pvalue" in scrape

        leader.stop()  # its lease goes with it: the other starts computing
        until(lambda: runs(follower) >= 1, seconds=10)
    finally:
        first.stop()
        second.stop()
        store.metadata.drop_all(store.engine)
        store.dispose()
