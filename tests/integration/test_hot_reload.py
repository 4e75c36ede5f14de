"""Hot model reload under continuous load (`POST /v1/admin/models/reload`).

The service serves from a model registry holding two versions of the test bundle fitted on
different synthetic data, so the same model ranks differently in each. Client threads
hammer `/v1/recommend` while the service reloads from version A to version B. Every
request must succeed, every response must be exactly the ranking of the version it names,
each thread must switch from A to B once and never back, and every exposure row must
store the version that served its request (checked in SQL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pg_gate import PG_URL, require_postgres
from pydantic import SecretStr
from test_serve_support import build_bundle, unique_prefix, write_config

from abrec.artifacts import ModelRegistry
from abrec.models.bundle import ModelBundle
from abrec.serve.config import ServeConfig
from abrec.serve.engine import Engine
from abrec.serve.runner import ServiceThread
from abrec.store import EventStore

TOKEN = "reload-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UNITS = [f"u{i}" for i in range(12)]
K = 5


@dataclass
class Setup:
    client: httpx.Client
    store: EventStore
    a: str
    b: str
    registry: ModelRegistry
    root: Path
    thread: ServiceThread


def registry_config(tmp: Path, url: str, prefix: str, root: Path) -> ServeConfig:
    path = write_config(tmp, url, tmp / "unused", table_prefix=prefix)
    text = path.read_text().replace(f'bundle = "{tmp / "unused"}"', f'model_registry = "{root}"')
    path.write_text(text)
    config = ServeConfig.from_toml(path)
    return config.model_copy(update={"admin_token": SecretStr(TOKEN)})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    reg = ModelRegistry(tmp_path / "models")
    a = reg.register(build_bundle(tmp_path / "a", seed=0)[0]).version
    b = reg.register(build_bundle(tmp_path / "b", seed=1)[0]).version
    reg.promote(a)
    if request.param == "postgres":
        require_postgres()
        url = PG_URL
    else:
        url = f"sqlite:///{tmp_path / 'events.db'}"
    prefix = unique_prefix("reload")
    thread = ServiceThread(registry_config(tmp_path, url, prefix, reg.root)).start()
    store = EventStore.from_url(url, table_prefix=prefix)
    try:
        with httpx.Client(base_url=thread.url, timeout=30) as client:
            yield Setup(client, store, a, b, reg, reg.root, thread)
    finally:
        thread.stop()
        if store.dialect == "postgresql":
            store.metadata.drop_all(store.engine)
        store.dispose()


def expected_lists(reg: ModelRegistry, version: str) -> dict[tuple[str, str], list[str]]:
    """(model, unit) -> the top-K items of that version, computed in this process."""
    engine = Engine(ModelBundle.load(reg.get(version).bundle))
    return {(m, u): engine.recommend(m, u, K).item_ids for m in ("cooc", "cooc_b") for u in UNITS}


def test_reload_under_load_loses_nothing_and_attributes_every_exposure(s: Setup) -> None:
    want = {s.a: expected_lists(s.registry, s.a), s.b: expected_lists(s.registry, s.b)}
    differ = [key for key in want[s.a] if want[s.a][key] != want[s.b][key]]
    assert len(differ) >= len(UNITS) // 2, "the two versions must rank differently"
    assert s.client.get("/v1/admin/models", headers=AUTH).json()["version"] == s.a

    stop = threading.Event()
    seen: list[list[tuple[int, dict[str, Any] | str, str]]] = [[], []]

    def hammer(t: int) -> None:
        with httpx.Client(base_url=str(s.client.base_url), timeout=30) as c:
            i = 0
            while not stop.is_set():
                unit = UNITS[(i + t * 5) % len(UNITS)]
                r = c.post("/v1/recommend", json={"unit_id": unit, "experiment": "exp1", "k": K})
                body = r.json() if r.status_code == 200 else r.text
                seen[t].append((r.status_code, body, unit))
                i += 1

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    time.sleep(1.0)
    r = s.client.post("/v1/admin/models/reload", json={"version": s.b}, headers=AUTH)
    time.sleep(1.0)
    stop.set()
    for th in threads:
        th.join(timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == s.b and r.json()["previous"] == s.a

    bodies: list[tuple[dict[str, Any], str]] = []
    for t in range(2):
        failed = [x for x in seen[t] if x[0] != 200]
        assert not failed, failed[:3]
        versions = [x[1]["model_version"] for x in seen[t] if isinstance(x[1], dict)]
        # A, then B from the swap on: never back, both seen
        switch = versions.index(s.b)
        assert switch > 0 and set(versions[:switch]) == {s.a} and set(versions[switch:]) == {s.b}
        bodies += [(x[1], x[2]) for x in seen[t] if isinstance(x[1], dict)]
    for body, unit in bodies:
        assert body["variant"] is not None
        items = [it["item_id"] for it in body["items"]]
        assert items == want[body["model_version"]][(body["model"], unit)], body

    e = s.store.events.c
    with s.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(e.request_id, e.position, e.item_id, e.model_version, e.unit_id).where(
                e.type == "exposure"
            )
        ).all()
    stored: dict[str, dict[int, tuple[str, str, str]]] = {}
    for req, pos, item, version, unit in rows:
        stored.setdefault(req, {})[pos] = (item, version, unit)
    assert len(stored) == len(bodies) and len(rows) == K * len(bodies)
    for body, unit in bodies:
        row = stored[body["request_id"]]
        assert [row[p][0] for p in range(K)] == [it["item_id"] for it in body["items"]]
        assert {(row[p][1], row[p][2]) for p in range(K)} == {(body["model_version"], unit)}
    # every exposure's items are that version's ranking, read back from SQL alone
    for row in stored.values():
        version, unit = row[0][1], row[0][2]
        items = [row[p][0] for p in range(K)]
        assert items in (want[version][("cooc", unit)], want[version][("cooc_b", unit)])
    assert s.store.serving_model() == s.b


def test_reload_refuses_a_version_missing_a_running_experiments_model(
    s: Setup, tmp_path: Path
) -> None:
    bundle, _ = build_bundle(tmp_path / "c", seed=2)
    full = ModelBundle.load(bundle)
    lacking = ModelBundle(
        models={k: v for k, v in full.models.items() if k != "cooc_b"},
        user_ids=full.user_ids,
        item_ids=full.item_ids,
    ).save(tmp_path / "lacking")
    c = s.registry.register(lacking).version
    r = s.client.post("/v1/admin/models/reload", json={"version": c}, headers=AUTH)
    assert r.status_code == 409
    assert "exp1: cooc_b" in r.json()["detail"] and c in r.json()["detail"]
    assert s.client.get("/v1/admin/models", headers=AUTH).json()["version"] == s.a
    assert s.store.serving_model() is None  # nothing stored for the other processes
    body = s.client.post("/v1/recommend", json={"unit_id": "u1", "experiment": "exp1"}).json()
    assert body["model_version"] == s.a


def test_reload_errors_are_4xx(s: Setup) -> None:
    url = "/v1/admin/models/reload"
    assert s.client.post(url, json={"version": s.b}).status_code == 401
    r = s.client.post(url, json={"version": "0123456789abcdef"}, headers=AUTH)
    assert r.status_code == 404 and "no model version" in r.json()["detail"]
    assert s.client.post(url, json={"version": "../etc"}, headers=AUTH).status_code == 422
    assert s.client.post(url, json={"other": 1}, headers=AUTH).status_code == 422
    # no body: the promoted version (A, already served), stored as the serving version
    r = s.client.post(url, headers=AUTH)
    assert r.status_code == 200 and r.json()["version"] == s.a and r.json()["promoted"] == s.a
    s.registry.promote(s.b)
    r = s.client.post(url, headers=AUTH)
    assert r.status_code == 200 and r.json()["version"] == s.b and r.json()["previous"] == s.a


@pytest.fixture
def s(setup: Setup) -> Setup:
    return setup


def test_clients_may_not_send_model_version(s: Setup) -> None:
    body = s.client.post("/v1/recommend", json={"unit_id": "u2", "experiment": "exp1"}).json()
    item = body["items"][0]
    click = {
        "event_id": "c1",
        "experiment": "exp1",
        "variant": body["variant"],
        "unit_id": "u2",
        "type": "click",
        "item_id": item["item_id"],
        "request_id": body["request_id"],
        "position": 0,
    }
    r = s.client.post("/v1/events", json={"events": [{**click, "model_version": s.a}]})
    assert r.status_code == 422 and "model_version" in r.json()["errors"][0]["message"]
    assert s.client.post("/v1/events", json={"events": [click]}).status_code == 200


def test_a_request_in_flight_during_the_swap_is_served_and_logged_by_its_version(
    s: Setup,
) -> None:
    """The swap happens while a request is being scored by version A (a hook on A's engine
    reloads B in the middle of the request): the response and its exposures still say A
    and hold A's ranking; the next request is B's."""
    services = s.thread.app.state.services
    engine_a = services.engine
    assert engine_a.version == s.a
    original = engine_a.recommend
    calls: list[str] = []

    def recommend_then_swap(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        if not calls:
            calls.append("swapped")
            services.reload_model(s.b)
        return out

    engine_a.recommend = recommend_then_swap
    want_a, want_b = expected_lists(s.registry, s.a), expected_lists(s.registry, s.b)
    unit = next(
        u
        for u in UNITS
        if want_a[("cooc", u)] != want_b[("cooc", u)]
        and want_a[("cooc_b", u)] != want_b[("cooc_b", u)]
    )
    body = s.client.post(
        "/v1/recommend", json={"unit_id": unit, "experiment": "exp1", "k": K}
    ).json()
    assert calls == ["swapped"] and services.engine.version == s.b
    assert body["model_version"] == s.a
    assert [it["item_id"] for it in body["items"]] == want_a[(body["model"], unit)]
    e = s.store.events.c
    with s.store.engine.connect() as conn:
        stored = (
            conn.execute(
                sa.select(e.model_version).where(e.request_id == body["request_id"]).distinct()
            )
            .scalars()
            .all()
        )
    assert stored == [s.a]
    after = s.client.post(
        "/v1/recommend", json={"unit_id": unit, "experiment": "exp1", "k": K}
    ).json()
    assert after["model_version"] == s.b
    assert [it["item_id"] for it in after["items"]] == want_b[(after["model"], unit)]
