"""Issue 9 regressions for `/v1/events`: exposures only from the service, clicks and
conversions bounded by the exposures they reference, `event_id` conflicts (409), the
batch contract, and non-sticky experiments after a weights change — on SQLite and
PostgreSQL, over real loopback HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from test_serve_support import (
    LiveService,
    live_service,
    served_fields,
)

from abrec.serve.schemas import MAX_EVENT_ERRORS

TOKEN = "hardening-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


Svc = LiveService


@pytest.fixture(scope="module", params=BACKENDS)
def svc(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Svc]:
    tmp = tmp_path_factory.mktemp(f"harden_{request.param}")
    with live_service(request.param, tmp, TOKEN, "hard") as live:
        yield live


def serve(svc: Svc, unit: str, exp: str = "exp1", k: int = 3) -> list[dict[str, object]]:
    """Recommend to a unit; the click fields of each served item."""
    return served_fields(svc.client, unit, exp, k)


def click(eid: str, fields: dict[str, object], **over: object) -> dict[str, object]:
    return {"event_id": eid, "type": "click", **fields, **over}


def post(svc: Svc, *events: dict[str, object] | str) -> httpx.Response:
    return svc.client.post("/v1/events", json={"events": list(events)})


def stored_ids(svc: Svc, *ids: str) -> set[str]:
    ev = svc.store.events
    with svc.store.engine.connect() as conn:
        rows = conn.execute(ev.select().where(ev.c.event_id.in_(ids))).all()
    return {r.event_id for r in rows}


def other_variant(v: object) -> str:
    return {"control": "treatment", "treatment": "control"}[str(v)]


# ------------------------------------------------------------------ exposures only by the service
def test_posted_exposure_is_refused(svc: Svc) -> None:
    (it,) = serve(svc, "hx-1", k=1)
    r = post(svc, {"event_id": "hx-exp-0", "type": "exposure", **it}, click("hx-exp-1", it))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 1
    (err,) = body["errors"]
    assert err["index"] == 0 and err["status"] == 422
    assert "exposures are logged by the service" in err["message"]
    assert stored_ids(svc, "hx-exp-0", "hx-exp-1") == {"hx-exp-1"}


# ------------------------------------------------------------------ references and the bound
def test_click_must_reference_a_served_exposure(svc: Svc) -> None:
    a, b = serve(svc, "hr-1", k=2)
    (c,) = serve(svc, "hr-2", k=1)
    unserved = next(f"i{j}" for j in range(40) if f"i{j}" not in {a["item_id"], b["item_id"]})
    batch = [
        click("hr-0", a),  # by request_id: fine
        click("hr-1", b, request_id=None),  # by (unit, item): fine
        click("hr-2", a, item_id=unserved, request_id=None),  # item never served to hr-1
        click("hr-3", a, request_id=c["request_id"]),  # another unit's request
        click("hr-4", {**b, "position": 7}),  # wrong position for that request
        click("hr-5", a, item_id=None, position=None),  # no item
        click("hr-6", a, variant=other_variant(a["variant"])),  # another arm
        click("hr-7", a, unit_id="hr-nobody"),  # unit never served
        click("hr-8", a, experiment="no-such-exp"),  # no exposures there at all
    ]
    r = post(svc, *batch)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["inserted"] == 2 and body["rejected"] == 7
    msgs = {e["index"]: e["message"] for e in body["errors"]}
    assert sorted(msgs) == [2, 3, 4, 5, 6, 7, 8]
    assert "never served" in msgs[2] and unserved in msgs[2]
    assert "did not serve" in msgs[3]
    assert "position 7 does not match" in msgs[4]
    assert "must name the item_id" in msgs[5]
    for i in (6, 7, 8):
        assert "never served" in msgs[i]
    assert stored_ids(svc, *(str(e["event_id"]) for e in batch)) == {"hr-0", "hr-1"}


@pytest.mark.parametrize("kind", ["click", "conversion"])
def test_at_most_one_per_exposure(svc: Svc, kind: str) -> None:
    unit = f"hb-{kind}"
    (a,) = serve(svc, unit, k=1)
    ok = post(svc, click(f"{unit}-0", a, type=kind))
    assert ok.status_code == 200, ok.text
    # the same exposure again: by its request, by (unit, item), in the same batch twice
    r = post(
        svc,
        click(f"{unit}-1", a, type=kind),
        click(f"{unit}-2", a, type=kind, request_id=None, position=None),
    )
    assert r.status_code == 422
    msgs = [e["message"] for e in r.json()["errors"]]
    assert len(msgs) == 2 and all(f"at most one {kind}" in m for m in msgs)
    # a second exposure of the same item allows exactly one more, by (unit, item)
    items = serve(svc, unit, k=3)
    again = [it for it in items if it["item_id"] == a["item_id"]]
    batch = [click(f"{unit}-{3 + j}", a, type=kind, request_id=None) for j in range(3)]
    r = post(svc, *batch)
    assert r.json()["accepted"] == len(again), r.text


def test_ctr_cannot_exceed_one(svc: Svc) -> None:
    """A client hammering clicks: per unit and per variant, clicks never exceed exposures."""
    rng = np.random.default_rng(9)
    events = []
    for u in range(12):
        for it in serve(svc, f"hc-{u}", k=2):
            for rep in range(int(rng.integers(1, 5))):  # up to 4 clicks per exposure
                by_request = rep % 2 == 0
                events.append(
                    click(
                        f"hc-{u}-{it['item_id']}-{rep}",
                        it,
                        request_id=it["request_id"] if by_request else None,
                    )
                )
    r = post(svc, *events)
    assert r.status_code == 422
    assert r.json()["accepted"] == 24  # exactly one click per exposure
    f = svc.store.unit_frame("exp1")
    mine = np.array([str(u).startswith("hc-") for u in f["unit_id"]])
    assert (f["clicks"][mine] == f["exposures"][mine]).all()
    assert (f["clicks"] <= f["exposures"]).all()


def test_concurrent_clicks_on_one_exposure_store_one(svc: Svc) -> None:
    (a,) = serve(svc, "hk-1", k=1)
    results: list[int] = []

    def worker(i: int) -> None:
        with httpx.Client(base_url=svc.thread.url, timeout=30) as c:
            r = c.post("/v1/events", json={"events": [click(f"hk-{i}", a)]})
            results.append(r.json()["accepted"])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] * 7 + [1]
    assert len(stored_ids(svc, *(f"hk-{i}" for i in range(8)))) == 1


# ------------------------------------------------------------------ event_id conflicts
def test_event_id_reuse_with_other_content_is_409(svc: Svc) -> None:
    a, b = serve(svc, "hi-1", k=2)
    first = click("hi-0", a)
    assert post(svc, first).status_code == 200
    # identical replay (ts omitted both times): accepted, not stored twice
    r = post(svc, first)
    assert r.status_code == 200 and r.json()["inserted"] == 0 and r.json()["accepted"] == 1
    # same id, other item / other experiment: 409 naming the id and the fields
    r = post(svc, click("hi-0", b))
    assert r.status_code == 409, r.text
    (err,) = r.json()["errors"]
    assert err["status"] == 409 and "'hi-0'" in err["message"]
    assert "item_id" in err["message"] and "position" in err["message"]
    r = post(svc, {**first, "experiment": "another-exp"})
    assert r.status_code == 409 and "experiment" in r.json()["errors"][0]["message"]
    # a conflict does not cost the batch its good events; with an invalid event too: 422
    r = post(svc, click("hi-0", b), click("hi-1", b))
    assert r.status_code == 409 and r.json()["accepted"] == 1
    r = post(svc, click("hi-0", b), {"event_id": "hi-2"})
    assert r.status_code == 422
    assert [e["status"] for e in r.json()["errors"]] == [409, 422]
    # within one batch: the first occurrence wins, a different second one conflicts
    (c,) = serve(svc, "hi-2", k=1)
    r = post(svc, click("hi-3", c), click("hi-3", c, position=5))
    assert r.status_code == 409 and r.json()["inserted"] == 1
    assert svc.store.count("another-exp") == 0


def test_identical_replay_with_explicit_ts_is_a_duplicate(svc: Svc) -> None:
    (a,) = serve(svc, "ht-1", k=1)
    e = click("ht-0", a, ts="2026-01-05T12:00:00+02:00")
    assert post(svc, e).json()["inserted"] == 1
    # the same instant written in another offset is the same content
    r = post(svc, {**e, "ts": "2026-01-05T10:00:00Z"})
    assert r.status_code == 200 and r.json() == {
        "accepted": 1,
        "inserted": 0,
        "rejected": 0,
        "errors": [],
    }
    r = post(svc, {**e, "ts": "2026-01-05T10:00:01Z"})
    assert r.status_code == 409 and "ts" in r.json()["errors"][0]["message"]


# ------------------------------------------------------------------ batch contract
def test_reply_is_bounded_and_never_echoes_input(svc: Svc) -> None:
    marker = "ECHO-MARKER-" + "x" * 200
    (a,) = serve(svc, "hz-1", k=1)
    bad = [{"event_id": f"hz-{i}", "type": "click", "unit_id": marker} for i in range(500)]
    r = post(svc, click("hz-good", a), *bad, {"event_id": marker[:100], "type": "exposure"})
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 501
    assert len(body["errors"]) == MAX_EVENT_ERRORS  # listed: the first ones by index
    assert [e["index"] for e in body["errors"]] == list(range(1, MAX_EVENT_ERRORS + 1))
    assert marker[:40] not in r.text
    assert len(r.content) < 100 * 300
    assert stored_ids(svc, "hz-good") == {"hz-good"}


# ------------------------------------------------------------------ item 3: non-sticky + weights
def test_non_sticky_clicks_survive_a_weights_change(svc: Svc) -> None:
    """Issue 9 item 3: served under 0.5/0.5, clicked after PUT weights 0.9/0.1: all accepted."""
    spec = {
        "id": "loose-w",
        "sticky": False,
        "variants": [{"name": "a", "model": "cooc"}, {"name": "b", "model": "cooc_b"}],
    }
    assert svc.client.post("/v1/admin/experiments", json=spec, headers=ADMIN).status_code == 201
    r = svc.client.post("/v1/admin/experiments/loose-w/start", headers=ADMIN)
    assert r.status_code == 200
    served = [serve(svc, f"hw-{u}", exp="loose-w", k=1)[0] for u in range(200)]
    r = svc.client.put(
        "/v1/admin/experiments/loose-w/weights",
        json={"weights": {"a": 0.9, "b": 0.1}},
        headers=ADMIN,
    )
    assert r.status_code == 200, r.text
    moved = [
        it
        for it in served
        if serve(svc, str(it["unit_id"]), exp="loose-w", k=1)[0]["variant"] != it["variant"]
    ]
    assert moved, "the weights change should re-bucket some units (non-sticky)"
    r = post(svc, *(click(f"hw-click-{i}", it) for i, it in enumerate(served)))
    assert r.status_code == 200, r.text[:500]
    assert r.json()["accepted"] == 200 and r.json()["inserted"] == 200
    f = svc.store.unit_frame("loose-w")
    per_variant = {v: int(f["clicks"][f["variant"] == v].sum()) for v in ("a", "b")}
    expected = {v: sum(it["variant"] == v for it in served) for v in ("a", "b")}
    assert per_variant == expected


def test_reply_shape_documented_in_openapi(svc: Svc) -> None:
    schema = svc.client.get("/openapi.json").json()
    responses = schema["paths"]["/v1/events"]["post"]["responses"]
    assert {"200", "409", "422", "413"} <= set(responses)
    props = schema["components"]["schemas"]["EventsReply"]["properties"]
    assert {"accepted", "inserted", "rejected", "errors"} <= set(props)
    json.dumps(schema)
