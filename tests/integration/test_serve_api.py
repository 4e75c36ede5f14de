"""The HTTP service over real loopback HTTP, on a real SQLite file store and on PostgreSQL."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from pg_gate import PG_URL, require_postgres
from test_serve_support import (
    N_ITEMS,
    build_bundle,
    served_fields,
    start_service,
    unique_prefix,
    write_config,
)

from abrec.data.types import Interactions
from abrec.models.base import top_k
from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread, database_problem
from abrec.store import EventStore

TOKEN = "test-admin-token-123"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Svc:
    url: str
    client: httpx.Client
    store: EventStore
    inter: Interactions
    config: ServeConfig
    thread: ServiceThread


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def svc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    tmp = tmp_path_factory.mktemp(f"serve_{request.param}")
    bundle, inter = build_bundle(tmp / "bundle")
    prefix = unique_prefix("api")
    if request.param == "postgres":
        require_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'events.db'}"
    cfg_path = write_config(tmp, url, bundle, table_prefix=prefix)
    config = ServeConfig.from_toml(cfg_path)
    thread = start_service(config, TOKEN)
    store = EventStore.from_url(url, table_prefix=prefix)
    with httpx.Client(base_url=thread.url, timeout=30) as client:
        yield Svc(thread.url, client, store, inter, config, thread)
    thread.stop()
    if request.param == "postgres":
        store.metadata.drop_all(store.engine)
    store.dispose()


def expected_known(inter: Interactions, user: int, k: int) -> list[str]:
    """Independent reference for the Cooc model: (x_u X^T X, zero diagonal) minus seen items."""
    x = inter.matrix.toarray().astype(np.float64)
    sim = x.T @ x
    np.fill_diagonal(sim, 0.0)
    s = x[user] @ sim
    s[x[user] > 0] = -np.inf
    items, scores = top_k(s[None, :], k)
    return [f"i{j}" for j, sc in zip(items[0], scores[0], strict=True) if np.isfinite(sc)]


def rec(svc: Svc, unit: str, exp: str = "exp1", k: int = 5, **extra: object) -> httpx.Response:
    return svc.client.post(
        "/v1/recommend", json={"unit_id": unit, "experiment": exp, "k": k, **extra}
    )


def ev(eid: str, **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": eid,
        "experiment": "exp1",
        "variant": "control",
        "unit_id": "u1",
        "type": "click",
        "item_id": "i1",
        "position": 0,
    }
    base.update(kw)
    return base


def served(svc: Svc, unit: str, exp: str = "exp1", k: int = 1) -> list[dict[str, object]]:
    """Event fields of each item /v1/recommend served a unit in ``exp`` (one exposure each)."""
    return served_fields(svc.client, unit, exp, k)


def assigned(svc: Svc, unit: str, exp: str = "exp1") -> dict[str, object]:
    """Event fields of a click on the item /v1/recommend served a unit in ``exp``."""
    return served(svc, unit, exp)[0]


def test_the_started_service_exempts_what_it_loaded_from_the_cyclic_gc(svc: Svc) -> None:
    """`freeze_heap` ran at start: the models and indices the service loaded are in the
    permanent generation, so a full collection does not walk them under load."""
    import gc

    services = svc.thread.app.state.services
    frozen = gc.get_freeze_count()
    assert frozen > 1000
    gc.collect()
    # a full collection leaves them where they are (permanent generation, not generation 2)
    assert gc.get_freeze_count() == frozen
    assert not any(o is services.engine for o in gc.get_objects(generation=2))


def test_health_and_ready(svc: Svc) -> None:
    assert svc.client.get("/healthz").json()["status"] == "ok"
    r = svc.client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["store"] == "ok"


def test_recommend_known_user_logs_exposures_and_is_sticky(svc: Svc) -> None:
    before = svc.store.count("exp1")
    r = rec(svc, "u3", k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["variant"] in {"control", "treatment"}
    assert body["model"] == {"control": "cooc", "treatment": "cooc_b"}[body["variant"]]
    items = body["items"]
    assert [it["position"] for it in items] == list(range(5))
    assert [it["item_id"] for it in items] == expected_known(svc.inter, 3, 5)
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)
    # one exposure per shown item, durably written before the response
    assert svc.store.count("exp1") == before + 5
    frame = svc.store.unit_frame("exp1")
    row = list(frame["unit_id"]).index("u3")
    assert frame["variant"][row] == body["variant"]
    # sticky: same unit, same variant, every time
    for _ in range(3):
        assert rec(svc, "u3").json()["variant"] == body["variant"]


def test_unknown_unit_gets_popularity_never_error(svc: Svc) -> None:
    r = rec(svc, "nobody-ever-seen", k=7)
    assert r.status_code == 200
    pop = np.asarray(svc.inter.matrix.sum(axis=0)).ravel()
    items, _ = top_k(pop[None, :].astype(np.float64), 7)
    assert [it["item_id"] for it in r.json()["items"]] == [f"i{j}" for j in items[0]]


def test_unknown_unit_with_history_uses_it(svc: Svc) -> None:
    hist = ["i0", "i5", "not-an-item"]
    r = rec(svc, "anon-with-history", k=6, context={"history": hist})
    assert r.status_code == 200, r.text
    got = [it["item_id"] for it in r.json()["items"]]
    x = svc.inter.matrix.toarray().astype(np.float64)
    sim = x.T @ x
    np.fill_diagonal(sim, 0.0)
    s = sim[0] + sim[5]
    s[[0, 5]] = -np.inf
    items, _ = top_k(s[None, :], 6)
    assert got == [f"i{j}" for j in items[0]]
    assert "i0" not in got and "i5" not in got


def ease_reference(inter: Interactions, lambda_: float) -> np.ndarray:
    """Independent EASE item-item weights (float64): B = I - P / diag(P), P = (X'X + l I)^-1."""
    x = inter.matrix.toarray().astype(np.float64)
    active = x.sum(axis=0) > 0
    P = np.linalg.inv(x[:, active].T @ x[:, active] + lambda_ * np.eye(int(active.sum())))
    B = np.zeros((x.shape[1], x.shape[1]))
    B[np.ix_(active, active)] = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


def test_unknown_unit_with_history_gets_personalised_ease(svc: Svc) -> None:
    """A real model's `score_history` over HTTP: EASE rows of the history, not popularity."""
    spec = {
        "id": "hist-ease",
        "variants": [{"name": "a", "model": "ease"}, {"name": "b", "model": "ease"}],
    }
    assert svc.client.post("/v1/admin/experiments", json=spec, headers=ADMIN).status_code == 201
    r = svc.client.post("/v1/admin/experiments/hist-ease/start", headers=ADMIN)
    assert r.status_code == 200
    B = ease_reference(svc.inter, 10.0)  # the bundle's EASE(lambda_=10)
    pop = np.asarray(svc.inter.matrix.sum(axis=0), dtype=np.float64).ravel()
    got_lists = []
    for n, hist in enumerate([[3, 8, 17], [1, 12, 25, 30]]):
        body = rec(
            svc,
            f"anon-ease-{n}",
            exp="hist-ease",
            k=6,
            context={"history": [f"i{j}" for j in hist]},
        ).json()
        assert body["model"] == "ease"
        got = [int(it["item_id"][1:]) for it in body["items"]]
        scores = np.array([it["score"] for it in body["items"]])
        ref = B[hist].sum(axis=0)
        ref[hist] = -np.inf
        _, ref_scores = top_k(ref[None, :], 6)
        np.testing.assert_allclose(scores, ref_scores[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(scores, ref[got], rtol=1e-4, atol=1e-5)
        assert not set(got) & set(hist)
        pop_hist = pop.copy()
        pop_hist[hist] = -np.inf
        assert got != top_k(pop_hist[None, :], 6)[0][0].tolist()  # not the popularity list
        got_lists.append(got)
    assert got_lists[0] != got_lists[1]  # the list follows the history


def test_unknown_experiment_falls_back_without_exposures(svc: Svc) -> None:
    total = svc.store.count()
    r = rec(svc, "u2", exp="no-such-experiment", k=4)
    assert r.status_code == 200
    body = r.json()
    assert body["variant"] is None and body["model"] == "cooc"
    assert len(body["items"]) == 4
    assert svc.store.count() == total  # nothing logged for a non-experiment


def test_draft_experiment_unassigned_until_started(svc: Svc) -> None:
    r = rec(svc, "u4", exp="draft1")
    assert r.json()["variant"] is None
    assert svc.client.post("/v1/admin/experiments/draft1/start", headers=ADMIN).status_code == 200
    assert rec(svc, "u4", exp="draft1").json()["variant"] in {"a", "b"}
    # stopped is final: restarting it is a conflict, not a crash
    assert svc.client.post("/v1/admin/experiments/draft1/stop", headers=ADMIN).status_code == 200
    assert svc.client.post("/v1/admin/experiments/draft1/start", headers=ADMIN).status_code == 409
    assert rec(svc, "u4", exp="draft1").json()["variant"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"unit_id": "u1", "experiment": "exp1", "k": 0},
        {"unit_id": "u1", "experiment": "exp1", "k": 21},  # above max_k = 20
        {"unit_id": "", "experiment": "exp1", "k": 3},
        {"experiment": "exp1", "k": 3},
        {"unit_id": "u1", "experiment": "exp1", "k": "many"},
        {"unit_id": "u1\x00", "experiment": "exp1"},
        {"unit_id": "u1", "experiment": "exp1", "context": {"history": "i1"}},
        [1, 2, 3],
        "just a string",
    ],
)
def test_recommend_bad_bodies_are_422(svc: Svc, body: object) -> None:
    r = svc.client.post("/v1/recommend", json=body)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("unit_id", ["a\u00a0b", "a\x85b", "a\u2028b"])
def test_recommend_unprintable_unit_id_is_422_and_assigns_nobody(svc: Svc, unit_id: str) -> None:
    # ids the exposure events would refuse must be refused up front (was a 500 after assigning)
    r = svc.client.post("/v1/recommend", json={"unit_id": unit_id, "experiment": "exp1", "k": 3})
    assert r.status_code == 422, r.text
    assert svc.store.get_assignment("exp1", unit_id) is None


def test_recommend_malformed_json_is_422(svc: Svc) -> None:
    r = svc.client.post(
        "/v1/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_recommend_body_is_json_and_documented(svc: Svc) -> None:
    """The route parses its body itself: JSON content types only (as FastAPI's rule), the
    422 shape of every route, and the same request schema in OpenAPI."""
    body = b'{"unit_id": "ct1", "experiment": "exp1", "k": 2}'
    r = svc.client.post("/v1/recommend", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body"]
    for ctype in ("application/json; charset=utf-8", "application/vnd.abrec+json"):
        r = svc.client.post("/v1/recommend", content=body, headers={"content-type": ctype})
        assert r.status_code == 200, r.text
    r = rec(svc, "ct1", k="2")  # strict: a string is not an int
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "k"]
    op = svc.client.get("/openapi.json").json()["paths"]["/v1/recommend"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert op["requestBody"]["required"] is True
    assert set(schema["required"]) == {"unit_id", "experiment"}
    assert set(schema["properties"]) == {"unit_id", "experiment", "k", "context"}
    assert "$ref" not in str(schema)


def test_events_valid_batch_and_idempotent_retry(svc: Svc) -> None:
    items = served(svc, "u1", k=5)
    batch = [
        ev(f"valid-{i}", type=t, **it)
        for i, it in enumerate(items)
        for t in ("click", "conversion")
    ]
    batch = [{**e, "event_id": f"valid-{i}"} for i, e in enumerate(batch)]
    before = svc.store.count("exp1")
    r = svc.client.post("/v1/events", json={"events": batch})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 10, "inserted": 10, "rejected": 0, "errors": []}
    r2 = svc.client.post("/v1/events", json={"events": batch})
    assert r2.json() == {"accepted": 10, "inserted": 0, "rejected": 0, "errors": []}
    assert svc.store.count("exp1") == before + 10


def test_events_duplicate_id_in_one_batch_first_occurrence_wins(svc: Svc) -> None:
    """Two events with one id in a batch: the first is stored, the other is a 409 naming it."""
    a, b = served(svc, "u2", k=2)
    first = ev("dup-in-batch", **a)
    later = ev("dup-in-batch", **b)  # same id, another item: different content
    other = ev("dup-other", type="covariate", value=2.0, **a)
    r = svc.client.post("/v1/events", json={"events": [first, other, later]})
    assert r.status_code == 409, r.text
    body = r.json()
    assert (body["accepted"], body["inserted"], body["rejected"]) == (2, 2, 1)
    (err,) = body["errors"]
    assert err["index"] == 2 and err["status"] == 409 and "dup-in-batch" in err["message"]
    with svc.store.engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(svc.store.events).where(svc.store.events.c.event_id == "dup-in-batch")
            )
            .mappings()
            .one()
        )
    assert (row["item_id"], row["position"]) == (a["item_id"], a["position"])


def test_events_mixed_batch_stores_good_ones(svc: Svc) -> None:
    now = datetime.now(UTC).isoformat()
    u, u2 = served(svc, "u1", k=2)
    batch = [
        ev("mixed-0", ts=now, **u),
        ev("mixed-1", ts="2024-01-01T00:00:00", **u),  # naive timestamp
        ev("mixed-2", **{**u, "position": -1}),
        "not an object",
        ev("mixed-4", value=1.5, type="covariate", **u),
        ev("mixed-5", type="Click!", **u),
        ev("mixed-6", unknown_field=1, **u),
        ev("mixed-7", **{**u, "item_id": "a\x00b"}),
        ev("mixed-8", type="covariate", **u),  # covariate without value
        ev("mixed-9", **u2),
    ]
    before = svc.store.count("exp1")
    r = svc.client.post("/v1/events", json={"events": batch})
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 3 and body["inserted"] == 3
    assert [e["index"] for e in body["errors"]] == [1, 2, 3, 5, 6, 7, 8]
    assert all(e["message"] for e in body["errors"])
    assert "timezone" in body["errors"][0]["message"]
    assert svc.store.count("exp1") == before + 3


def test_events_must_match_the_units_assignment(svc: Svc) -> None:
    good, second = served(svc, "arm-good", k=2)
    other = {"control": "treatment", "treatment": "control"}[str(good["variant"])]
    cov = {k: v for k, v in good.items() if k not in ("item_id", "position", "request_id")}
    batch = [
        ev("arm-0", **good),  # correct click
        ev("arm-1", **{**good, "variant": other}),  # wrong arm
        ev("arm-2", **{**good, "unit_id": "arm-never-assigned"}),  # never exposed
        ev("arm-3", **{**cov, "type": "covariate", "value": 2.0}),  # correct covariate
        ev("arm-4", **{**good, "variant": "no-such-variant"}),
        ev("arm-5", **{**cov, "type": "covariate", "value": 1.0, "variant": other}),
        ev("arm-6", **{**good, "experiment": "not-registered"}),  # no exposure there
        ev("arm-7", **{**cov, "type": "covariate", "value": 1.0, "experiment": "not-registered"}),
    ]
    before = svc.store.count("exp1")
    before_other = svc.store.count("not-registered")
    r = svc.client.post("/v1/events", json={"events": batch})
    assert r.status_code == 422, r.text
    body = r.json()
    assert [e["index"] for e in body["errors"]] == [1, 2, 4, 5, 6]
    msgs = {e["index"]: e["message"] for e in body["errors"]}
    assert f"variant {other!r}" in msgs[1] and "never served" in msgs[1]
    assert "never served" in msgs[2] and "arm-never-assigned" in msgs[2]
    assert "never served" in msgs[4] and "no-such-variant" in msgs[4]
    assert f"assigned to variant {good['variant']!r}" in msgs[5]
    assert "never served" in msgs[6] and "not-registered" in msgs[6]
    assert body["accepted"] == 3 and body["inserted"] == 3
    assert svc.store.count("exp1") == before + 2
    assert svc.store.count("not-registered") == before_other + 1
    frame = svc.store.unit_frame("exp1")
    rows = [i for i, u in enumerate(frame["unit_id"]) if u == "arm-good"]
    assert [frame["variant"][i] for i in rows] == [good["variant"]]  # nothing on the other arm
    assert frame["clicks"][rows[0]] == 1 and frame["covariate"][rows[0]] == 2.0
    assert "arm-never-assigned" not in set(frame["unit_id"])
    # the unit's correct click alone is accepted; a wrong-arm batch alone stores nothing
    ok = svc.client.post("/v1/events", json={"events": [ev("arm-8", **second)]})
    assert ok.status_code == 200
    assert ok.json() == {"accepted": 1, "inserted": 1, "rejected": 0, "errors": []}
    bad = svc.client.post(
        "/v1/events", json={"events": [ev("arm-9", **{**second, "variant": other})]}
    )
    assert bad.status_code == 422 and bad.json()["accepted"] == 0
    assert svc.store.count("exp1") == before + 3


def test_events_checked_against_assignments_stored_by_another_instance(svc: Svc) -> None:
    # an assignment written straight to the store (another replica) is found by the lookup
    stored = svc.store.save_assignment("exp1", "arm-replica", "treatment")
    unit = {"experiment": "exp1", "unit_id": "arm-replica", "type": "covariate", "value": 1.0}
    r = svc.client.post(
        "/v1/events",
        json={
            "events": [
                ev("arm-r0", variant=stored, **unit),
                ev("arm-r1", variant="control", **unit),
            ]
        },
    )
    assert r.status_code == 422
    assert [e["index"] for e in r.json()["errors"]] == [1]
    assert "assigned to variant 'treatment'" in r.json()["errors"][0]["message"]


def test_events_non_sticky_experiment_checked_against_hash_bucket(svc: Svc) -> None:
    spec = {
        "id": "loose1",
        "sticky": False,
        "variants": [{"name": "a", "model": "cooc"}, {"name": "b", "model": "cooc_b"}],
    }
    assert svc.client.post("/v1/admin/experiments", json=spec, headers=ADMIN).status_code == 201
    # a draft has served nobody: every event is rejected
    r = svc.client.post(
        "/v1/events", json={"events": [ev("loose-d", experiment="loose1", variant="a")]}
    )
    assert r.status_code == 422 and "never served" in r.json()["errors"][0]["message"]
    assert svc.client.post("/v1/admin/experiments/loose1/start", headers=ADMIN).status_code == 200
    u = assigned(svc, "loose-unit", exp="loose1")
    wrong = {"a": "b", "b": "a"}[str(u["variant"])]
    batch = [ev("loose-0", **u), ev("loose-1", **{**u, "variant": wrong})]
    r = svc.client.post("/v1/events", json={"events": batch})
    assert r.status_code == 422
    assert [e["index"] for e in r.json()["errors"]] == [1]
    assert r.json()["accepted"] == 1
    assert svc.store.get_assignment("loose1", "loose-unit") is None  # nothing stored


def test_store_get_assignments_one_query_many_experiments(svc: Svc) -> None:
    svc.store.save_assignment("ga1", "x", "a")
    svc.store.save_assignment("ga1", "y", "b")
    svc.store.save_assignment("ga2", "x", "c")
    got = svc.store.get_assignments([("ga1", "x"), ("ga2", "x"), ("ga2", "y"), ("ga1", "x")])
    assert got == {("ga1", "x"): "a", ("ga2", "x"): "c"}  # ("ga1","y") was not asked for
    assert svc.store.get_assignments([]) == {}


@pytest.mark.parametrize("body", [{"events": "x"}, {"evts": []}, [], {"events": [], "x": 1}])
def test_events_wrong_shape_is_422(svc: Svc, body: object) -> None:
    assert svc.client.post("/v1/events", json=body).status_code == 422


def test_admin_requires_token_and_changes_nothing(svc: Svc) -> None:
    spec = {
        "id": "noauth1",
        "variants": [{"name": "a", "model": "cooc"}, {"name": "b", "model": "cooc_b"}],
    }
    calls = [
        ("POST", "/v1/admin/experiments", spec),
        ("POST", "/v1/admin/experiments/exp1/stop", None),
        ("PUT", "/v1/admin/experiments/exp1/weights", {"weights": {"control": 1, "treatment": 0}}),
        ("GET", "/v1/admin/experiments", None),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path, body in calls:
            r = svc.client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
    listed = svc.client.get("/v1/admin/experiments", headers=ADMIN).json()
    by_id = {e["id"]: e for e in listed}
    assert "noauth1" not in by_id
    assert by_id["exp1"]["status"] == "running"
    assert [v["weight"] for v in by_id["exp1"]["variants"]] == [0.5, 0.5]


def test_admin_lifecycle_and_sticky_weights(svc: Svc) -> None:
    spec = {
        "id": "life1",
        "variants": [{"name": "a", "model": "cooc"}, {"name": "b", "model": "cooc_b"}],
    }
    r = svc.client.post("/v1/admin/experiments", json=spec, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "draft"
    assert svc.client.post("/v1/admin/experiments", json=spec, headers=ADMIN).status_code == 409
    bad_model = {
        **spec,
        "id": "life2",
        "variants": [{"name": "a", "model": "cooc"}, {"name": "b", "model": "nope"}],
    }
    assert (
        svc.client.post("/v1/admin/experiments", json=bad_model, headers=ADMIN).status_code == 422
    )
    assert (
        svc.client.post("/v1/admin/experiments", json={"id": "x"}, headers=ADMIN).status_code == 422
    )
    assert svc.client.post("/v1/admin/experiments/nope/start", headers=ADMIN).status_code == 404
    assert (
        svc.client.post("/v1/admin/experiments/life1/start", headers=ADMIN).json()["status"]
        == "running"
    )
    units = [f"w{i}" for i in range(24)]
    first = {u: rec(svc, u, exp="life1", k=1).json()["variant"] for u in units}
    assert set(first.values()) == {"a", "b"}
    r = svc.client.put(
        "/v1/admin/experiments/life1/weights", json={"weights": {"a": 0.0, "b": 1.0}}, headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert [v["weight"] for v in r.json()["variants"]] == [0.0, 1.0]
    bad = svc.client.put(
        "/v1/admin/experiments/life1/weights", json={"weights": {"zzz": 1.0}}, headers=ADMIN
    )
    assert bad.status_code == 422
    # already-assigned units stay; new units all go to b
    assert {u: rec(svc, u, exp="life1", k=1).json()["variant"] for u in units} == first
    assert {rec(svc, f"new{i}", exp="life1", k=1).json()["variant"] for i in range(10)} == {"b"}


def test_results_unknown_is_404(svc: Svc) -> None:
    r = svc.client.get("/v1/experiments/does-not-exist/results", headers=ADMIN)
    assert r.status_code == 404


def test_results_after_traffic(svc: Svc) -> None:
    rng = np.random.default_rng(1)
    events = []
    for u in range(30):
        body = rec(svc, f"r{u}", k=3).json()
        for it in body["items"]:
            if rng.random() < 0.3:
                events.append(
                    ev(
                        f"{body['request_id']}:click:{it['position']}",
                        variant=body["variant"],
                        unit_id=f"r{u}",
                        item_id=it["item_id"],
                        position=it["position"],
                        request_id=body["request_id"],
                    )
                )
    assert svc.client.post("/v1/events", json={"events": events}).status_code == 200
    r = svc.client.get("/v1/experiments/exp1/results", headers=ADMIN)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["experiment"] == "exp1" and res["control"] == "control"
    agg = svc.store.aggregate("exp1", [(), ("exposures",), ("clicks",)])
    by_name = {v["variant"]: v for v in res["variants"]}
    assert set(by_name) == {"control", "treatment"}
    for name, v in by_name.items():
        assert v["n"] == agg[name][()]
        assert v["totals"]["exposures"] == agg[name][("exposures",)]
        assert v["totals"]["clicks"] == agg[name][("clicks",)]
    assert res["srm"] is not None and 0.0 <= res["srm"]["p_value"] <= 1.0
    (comp,) = res["comparisons"]
    assert comp["treatment"] == "treatment" and comp["control"] == "control"
    assert comp["sequential_ctr"] is not None


def test_metrics_exposes_families(svc: Svc) -> None:
    r = svc.client.post(
        "/v1/events", json={"events": [ev("metric-click-1", **assigned(svc, "u9"))]}
    )
    assert r.status_code == 200, r.text
    text = svc.client.get("/metrics").text
    assert re.search(r'abrec_request_latency_seconds_bucket\{.*route="/v1/recommend"', text)
    assert re.search(r'abrec_events_ingested_total\{type="click"\} [1-9]', text)
    assert re.search(r'abrec_events_ingested_total\{type="exposure"\} [1-9]', text)
    assert re.search(r"abrec_assignments_total [1-9]", text)
    assert re.search(r"abrec_store_write_latency_seconds_count [1-9]", text)


def test_openapi_schema_lists_routes(svc: Svc) -> None:
    paths = svc.client.get("/openapi.json").json()["paths"]
    for p in (
        "/v1/recommend",
        "/v1/events",
        "/v1/admin/experiments",
        "/v1/admin/experiments/{experiment_id}/start",
        "/v1/admin/experiments/{experiment_id}/stop",
        "/v1/admin/experiments/{experiment_id}/weights",
        "/v1/experiments/{experiment_id}/results",
        "/metrics",
        "/healthz",
        "/readyz",
    ):
        assert p in paths


def test_acknowledged_exposures_visible_to_a_fresh_connection(svc: Svc) -> None:
    """Once /v1/recommend answered, its exposures are committed: a new store connection sees them."""
    before = svc.store.count("exp1")
    n_items = sum(len(rec(svc, f"d{i}", k=4).json()["items"]) for i in range(15))
    assert n_items == 60 and N_ITEMS >= 4
    fresh = EventStore.from_url(svc.config.store_url, table_prefix=svc.config.table_prefix)
    try:
        assert fresh.count("exp1") == before + 60
    finally:
        fresh.dispose()


def test_example_configs_parse() -> None:
    from abrec.experiment.spec import load_specs

    root = Path(__file__).resolve().parents[2]
    cfg = ServeConfig.from_toml(root / "examples" / "serve.toml")
    assert cfg.experiments is not None and cfg.bundle.name == "bundle"
    specs = load_specs(cfg.experiments)
    assert {s.id for s in specs} == {"ease-vs-popularity", "lm-vs-ease"}


def test_config_errors_are_named(tmp_path: Path) -> None:
    from abrec.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        ServeConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('bundle = "b"\nmax_k = 0\n')
    with pytest.raises(ConfigError, match="max_k"):
        ServeConfig.from_toml(bad)
    bad.write_text('bundle = "b"\nunknown_key = 1\n')
    with pytest.raises(ConfigError, match="unknown_key"):
        ServeConfig.from_toml(bad)


def test_startup_rejects_experiment_with_model_missing_from_bundle(tmp_path: Path) -> None:
    from abrec.serve.runner import ServiceError

    bundle, _ = build_bundle(tmp_path / "bundle")
    cfg_path = write_config(tmp_path, f"sqlite:///{tmp_path / 'e.db'}", bundle)
    (tmp_path / "experiments.toml").write_text(
        '[[experiment]]\nid = "x"\nvariants = [{ name = "a", model = "cooc" }, '
        '{ name = "b", model = "no_such_model" }]\n'
    )
    with pytest.raises(ServiceError, match="no_such_model"):
        ServiceThread(ServeConfig.from_toml(cfg_path)).start()
    missing_bundle = ServeConfig(
        bundle=tmp_path / "nowhere", store_url=f"sqlite:///{tmp_path / 'f.db'}"
    )
    with pytest.raises(ServiceError, match="not a model bundle"):
        ServiceThread(missing_bundle).start()


def test_database_problem_reports_unreachable_servers(tmp_path: Path) -> None:
    assert database_problem(f"sqlite:///{tmp_path / 'ok.db'}") is None
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    problem = database_problem(f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", 1.0)
    assert problem is not None and "OperationalError" in problem
