"""Several `abrec serve` processes over one PostgreSQL store.

Two real server processes (subprocesses on their own ports, one configuration): an
admin change made through one (create, start, weights, stop, model reload) is served by
the other within one second (a model reload within three, as the other process loads
the bundle); units requested from both at once while the weights keep changing get one
variant each, the stored one. Then `abrec serve --workers 2` (worker processes behind one
port) follows an admin change within one second on every worker and shuts down cleanly
on SIGTERM with every acknowledged exposure stored; its parent deals connections to the
workers in turn (eight connections: four each) and replaces a worker killed with -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa
from pg_gate import PG_URL, require_postgres
from test_serve_support import (
    HERE,
    build_bundle,
    free_port,
    spawn_until_ready,
    unique_prefix,
    write_config,
)

import abrec
from abrec.artifacts import ModelRegistry
from abrec.store import EventStore

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOKEN = "workers-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SRC = Path(abrec.__file__).resolve().parents[1]


def launch(cfg: Path, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`abrec serve` as a subprocess of this checkout; returns once /readyz answers 200."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
        "ABREC_ADMIN_TOKEN": TOKEN,
    }
    cmd = [sys.executable, "-m", "abrec", "serve", "-c", str(cfg), "--port", str(port), *extra]
    return spawn_until_ready(cmd, env, port, log, timeout_s=120)


#: Exit statuses of a graceful SIGTERM shutdown: uvicorn re-raises the signal after it
#: (-15) in a single process; the `--workers` supervisor exits 0.
GRACEFUL = (0, -signal.SIGTERM)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Seconds until `check()` holds (polled every 20 ms); fails after `seconds`."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not seen within {seconds} s")
        time.sleep(0.02)


def spec(exp_id: str, weights: tuple[float, float] = (0.5, 0.5)) -> dict[str, Any]:
    return {
        "id": exp_id,
        "variants": [
            {"name": "control", "weight": weights[0], "model": "cooc"},
            {"name": "treatment", "weight": weights[1], "model": "cooc_b"},
        ],
        "primary_metric": "ctr",
    }


@dataclass
class Pair:
    a: httpx.Client
    b: httpx.Client
    store: EventStore
    versions: tuple[str, str]


def registry_config(tmp: Path, prefix: str) -> tuple[Path, tuple[str, str]]:
    """serve.toml over a model registry holding two versions (the first promoted)."""
    reg = ModelRegistry(tmp / "models")
    a = reg.register(build_bundle(tmp / "a", seed=0)[0]).version
    b = reg.register(build_bundle(tmp / "b", seed=1)[0]).version
    reg.promote(a)
    cfg = write_config(tmp, PG_URL, tmp / "unused", table_prefix=prefix)
    cfg.write_text(
        cfg.read_text().replace(f'bundle = "{tmp / "unused"}"', f'model_registry = "{reg.root}"')
    )
    return cfg, (a, b)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    require_postgres()
    tmp = tmp_path_factory.mktemp("workers")
    prefix = unique_prefix("wk")
    cfg, versions = registry_config(tmp, prefix)
    procs: list[subprocess.Popen[bytes]] = []
    store = EventStore.from_url(PG_URL, table_prefix=prefix)
    try:
        ports = [free_port(), free_port()]
        for name, port in zip("ab", ports, strict=True):
            procs.append(launch(cfg, port, tmp / f"{name}.log"))
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30) as a,
            httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", timeout=30) as b,
        ):
            yield Pair(a, b, store, versions)
    finally:
        codes = [stop(p) for p in procs]
        store.metadata.drop_all(store.engine)
        store.dispose()
        assert all(c in GRACEFUL for c in codes), codes


def listed(c: httpx.Client, exp_id: str) -> dict[str, Any] | None:
    specs = c.get("/v1/admin/experiments", headers=AUTH).json()
    return next((x for x in specs if x["id"] == exp_id), None)


def variant(c: httpx.Client, exp_id: str, unit: str = "u3") -> str | None:
    r = c.post("/v1/recommend", json={"unit_id": unit, "experiment": exp_id, "k": 2})
    assert r.status_code == 200, r.text
    v: str | None = r.json()["variant"]
    return v


def test_admin_changes_in_one_process_reach_the_other_within_a_second(pair: Pair) -> None:
    a, b = pair.a, pair.b
    lag: dict[str, float] = {}
    assert a.post("/v1/admin/experiments", json=spec("live"), headers=AUTH).status_code == 201
    lag["create"] = within(1.0, lambda: listed(b, "live") is not None)
    assert variant(b, "live") is None  # a draft
    assert a.post("/v1/admin/experiments/live/start", headers=AUTH).status_code == 200
    lag["start"] = within(1.0, lambda: variant(b, "live") is not None)
    weights = {"control": 0.2, "treatment": 0.8}
    assert (
        a.put(
            "/v1/admin/experiments/live/weights", json={"weights": weights}, headers=AUTH
        ).status_code
        == 200
    )

    def new_weights() -> bool:
        got = listed(b, "live")
        return got is not None and [v["weight"] for v in got["variants"]] == [0.2, 0.8]

    lag["weights"] = within(1.0, new_weights)
    assert a.post("/v1/admin/experiments/live/stop", headers=AUTH).status_code == 200
    lag["stop"] = within(1.0, lambda: variant(b, "live") is None)
    # B refuses what A's change forbids: a stopped experiment cannot start again
    assert b.post("/v1/admin/experiments/live/start", headers=AUTH).status_code == 409

    old, new = pair.versions

    def served_by_b() -> str:
        r = b.post("/v1/recommend", json={"unit_id": "u1", "experiment": "exp1"})
        version: str = r.json()["model_version"]
        return version

    assert served_by_b() == old
    r = a.post("/v1/admin/models/reload", json={"version": new}, headers=AUTH)
    assert r.status_code == 200, r.text
    lag["model reload"] = within(3.0, lambda: served_by_b() == new)
    print("propagation lag (s):", {k: round(v, 3) for k, v in lag.items()})


def test_units_requested_from_both_processes_at_once_get_one_variant(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.post("/v1/admin/experiments", json=spec("churn"), headers=AUTH).status_code == 201
    assert a.post("/v1/admin/experiments/churn/start", headers=AUTH).status_code == 200
    within(1.0, lambda: variant(b, "churn") is not None)
    units = [f"c{i}" for i in range(150)]
    got: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
    done = threading.Event()
    barrier = threading.Barrier(3)

    def client(name: str, c: httpx.Client) -> None:
        barrier.wait()
        for u in units:
            got[name].append((u, str(variant(c, "churn", u))))

    def flipper() -> None:
        barrier.wait()
        i = 0
        while not done.is_set():
            w = (
                {"control": 0.95, "treatment": 0.05}
                if i % 2
                else {"control": 0.05, "treatment": 0.95}
            )
            a.put("/v1/admin/experiments/churn/weights", json={"weights": w}, headers=AUTH)
            i += 1
            time.sleep(0.05)

    threads = [
        threading.Thread(target=client, args=("a", a)),
        threading.Thread(target=client, args=("b", b)),
        threading.Thread(target=flipper),
    ]
    for t in threads:
        t.start()
    threads[0].join(120)
    threads[1].join(120)
    done.set()
    threads[2].join(30)
    from_a, from_b = dict(got["a"]), dict(got["b"])
    stored = pair.store.get_assignments([("churn", u) for u in units])
    assert len(from_a) == len(from_b) == len(units)
    assert from_a == from_b == {u: stored[("churn", u)] for u in units}
    assert len(set(from_a.values())) == 2  # the weights moved while units were assigned
    e = pair.store.events.c
    with pair.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(e.unit_id, e.variant)
            .where(e.experiment == "churn", e.unit_id.in_(units))
            .distinct()
        ).all()
    assert {(str(u), str(v)) for u, v in rows} == {(u, stored[("churn", u)]) for u in units}


@dataclass
class Served:
    """`abrec serve --workers 2` over a fresh table prefix."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    store: EventStore

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Served]:
    require_postgres()
    prefix = unique_prefix("wk2")
    bundle, _ = build_bundle(tmp_path / "bundle")
    cfg = write_config(tmp_path, PG_URL, bundle, table_prefix=prefix)
    port = free_port()
    log = tmp_path / "server.log"
    proc = launch(cfg, port, log, "--workers", "2")
    store = EventStore.from_url(PG_URL, table_prefix=prefix)
    try:
        yield Served(proc, port, log, store)
    finally:
        if proc.poll() is None:
            proc.kill()
        store.metadata.drop_all(store.engine)
        store.dispose()


def test_serve_workers_follow_admin_changes_and_stop_cleanly(two_workers: Served) -> None:
    acked = 0
    with httpx.Client(base_url=two_workers.url, timeout=30) as c:
        assert c.post("/v1/admin/experiments", json=spec("w"), headers=AUTH).status_code == 201
        assert c.post("/v1/admin/experiments/w/start", headers=AUTH).status_code == 200
        time.sleep(1.0)
        for i in range(40):  # spread over both workers: every one serves the running experiment
            r = c.post("/v1/recommend", json={"unit_id": f"x{i}", "experiment": "w", "k": 3})
            assert r.status_code == 200 and r.json()["variant"] is not None, r.text
            acked += 3
    code = stop(two_workers.proc)
    text = two_workers.log.read_text()
    assert code == 0, text
    assert text.count("Started server process") == 2 and "Finished server process" in text
    assert two_workers.store.count("w") == acked


def worker_processes(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The serving workers of `abrec serve --workers N` (multiprocessing's helpers aside)."""
    out = []
    for child in psutil.Process(proc.pid).children():
        cmd = " ".join(child.cmdline())
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(child)
    return out


def established(worker: psutil.Process, port: int) -> int:
    return sum(
        1
        for c in worker.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    )


def test_serve_workers_deal_connections_in_turn_and_replace_a_dead_worker(
    two_workers: Served,
) -> None:
    proc, port, log = two_workers.proc, two_workers.port, two_workers.log
    clients: list[httpx.Client] = []
    try:
        workers = worker_processes(proc)
        assert len(workers) == 2, [w.cmdline() for w in workers]
        for _ in range(8):  # eight keep-alive connections, opened one after another
            c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            assert c.get("/healthz").status_code == 200
            clients.append(c)
        assert sorted(established(w, port) for w in workers) == [4, 4]

        victim, survivor = workers
        victim.kill()  # its four connections die with it; the parent starts another
        victim.wait(10)
        within(60, lambda: len(worker_processes(proc)) == 2)
        replacement = next(w for w in worker_processes(proc) if w.pid != survivor.pid)
        within(60, lambda: f"worker {replacement.pid} is ready" in log.read_text())
        fresh = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) for _ in range(4)]
        clients += fresh
        for c in fresh:
            assert c.get("/healthz").status_code == 200
        assert established(replacement, port) == 2 and established(survivor, port) == 4 + 2
        assert proc.poll() is None
        assert stop(proc) == 0, log.read_text()
        assert "died (exit code -9); starting another" in log.read_text()
    finally:
        for c in clients:
            c.close()
