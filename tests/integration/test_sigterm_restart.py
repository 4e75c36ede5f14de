"""SIGTERM mid-stream, restart, retry: every acknowledged event is stored exactly once.

`abrec serve` runs as a real subprocess. Client threads post event batches with unique
ids and record which batches were acknowledged (HTTP 200). The server gets SIGTERM
while they are sending, shuts down gracefully and is restarted on the same store; the
unacknowledged batches are retried. Afterwards every acknowledged event is in the
store, no event id appears twice, and the total equals the number of unique ids sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
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

from abrec.store import EventStore

BATCH = 20
# Fallback when the `abrec` script is not installed: while `serve` is the only registered
# command typer makes it the root command, so the launcher drops the word then.
LAUNCH = (
    "import sys; from abrec.cli import app; "
    "args = sys.argv[1:]; "
    "args = args[1:] if len(app.registered_commands) == 1 else args; "
    "app(args, prog_name='abrec')"
)
CLIENTS = 3


def start_server(cfg: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start `abrec serve` and wait until /readyz answers 200."""
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script = Path(sys.executable).with_name("abrec")  # the installed `abrec` command
    launcher = [str(script)] if script.is_file() else [sys.executable, "-c", LAUNCH]
    cmd = [
        *launcher,
        "serve",
        "--config",
        str(cfg),
        "--port",
        str(port),
        "--log-level",
        "info",
    ]
    return spawn_until_ready(cmd, env, port, log, timeout_s=90)


def batch_events(b: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"sig-{b}-{j}",
            "experiment": "exp1",
            "variant": "control" if b % 2 else "treatment",
            "unit_id": f"unit{b % 50}",
            # covariates: clicks would need exposures served by /v1/recommend first
            "type": "covariate",
            "value": float(j),
            "item_id": f"i{j}",
            "position": j,
        }
        for j in range(BATCH)
    ]


def assign_units(url: str, prefix: str) -> None:
    """Store each unit's assignment up front: /v1/events rejects events for another arm."""
    store = EventStore.from_url(url, table_prefix=prefix)
    try:
        store.create_schema()
        for k in range(50):  # unit{b % 50} gets variant by the parity of b (50 is even)
            store.save_assignment("exp1", f"unit{k}", "control" if k % 2 else "treatment")
    finally:
        store.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sigterm_restart_keeps_every_acknowledged_event_once(
    backend: str, sig: signal.Signals, tmp_path: Path
) -> None:
    """SIGTERM: graceful shutdown flushes the writer. SIGKILL: no shutdown at all, so this
    checks that an acknowledgement is only ever sent after the commit."""
    if backend == "postgres":
        require_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path / 'events.db'}"
    prefix = unique_prefix("sig")
    bundle, _ = build_bundle(tmp_path / "bundle")
    cfg = write_config(tmp_path, url, bundle, table_prefix=prefix)
    assign_units(url, prefix)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"

    acked: set[int] = set()
    failed: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(10**9))

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not stop.is_set():
                with lock:
                    b = next(counter)
                try:
                    r = c.post("/v1/events", json={"events": batch_events(b)})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    (acked if ok else failed).add(b)
                if not ok:
                    time.sleep(0.02)

    proc = start_server(cfg, port, log)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) >= 40, f"too few acknowledged batches before SIGTERM:\n{log.read_text()}"
        proc.send_signal(sig)  # mid-stream: the clients keep sending
        rc = proc.wait(timeout=60)
        time.sleep(0.2)  # let the clients hit the closed port for a moment
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    if sig == signal.SIGTERM:
        assert rc in (0, -signal.SIGTERM), f"unexpected exit code {rc}:\n{text}"
        assert "Application shutdown complete" in text, text  # lifespan ran: writer flushed
    else:
        assert rc == -signal.SIGKILL
    assert failed, "SIGTERM should have interrupted some batches"
    n_acked_before = len(acked)

    proc2 = start_server(cfg, port, log)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            for b in sorted(failed):
                r = c.post("/v1/events", json={"events": batch_events(b)})
                assert r.status_code == 200, r.text
                assert r.json()["accepted"] == BATCH
                acked.add(b)
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(timeout=60)

    store = EventStore.from_url(url, table_prefix=prefix)
    try:
        ev = store.events
        with store.engine.connect() as conn:
            ids = [row[0] for row in conn.execute(sa.select(ev.c.event_id)).all()]
            dupes = conn.execute(
                sa.select(ev.c.event_id).group_by(ev.c.event_id).having(sa.func.count() > 1)
            ).all()
        sent = {f"sig-{b}-{j}" for b in acked for j in range(BATCH)}
        assert not dupes
        assert len(ids) == len(set(ids))
        assert set(ids) == sent  # every acknowledged event stored; nothing unexpected
        assert store.count("exp1") == len(sent) == len(acked) * BATCH
        assert n_acked_before >= 40
    finally:
        if backend == "postgres":
            store.metadata.drop_all(store.engine)
        store.dispose()
