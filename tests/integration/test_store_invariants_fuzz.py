"""Stateful property-based fuzz of the event and admin payloads (issue 9).

A hypothesis `RuleBasedStateMachine` drives the live service over loopback HTTP
(recommend, post events built from what was served with random mutations and reused
event ids, create/start/stop experiments, change weights) and asserts after EVERY step:
no 5xx, and the store's invariants hold:

- every stored click and conversion has an exposure of its (experiment, variant, unit,
  item); per such key no more clicks (conversions) than exposures; per
  (experiment, request_id, item_id) at most one click (conversion);
- no exposure was written through `/v1/events` (every exposure has a request_id and a
  position the service gave);
- the latest stored spec of every experiment loads with `parse_spec` and its stored
  weights sum to 1.

Both backends; `ABREC_FUZZ_STATEFUL_EXAMPLES` (default 30) runs of up to 8 steps each.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from test_serve_support import LiveService, live_service

from abrec.experiment.spec import parse_spec
from abrec.store import EventStore

TOKEN = "fuzz-stateful-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = int(os.environ.get("ABREC_FUZZ_STATEFUL_EXAMPLES", "30"))
MODELS = ["cooc", "cooc_b", "nope"]
EXPERIMENTS = ["exp1", "draft1", "fz-a", "fz-b", "no-such"]
# mostly plausible names (so experiments get created and run), and any text at all:
# NUL, control and bidi characters, lone surrogates, blanks (issue 9, item 2)
NAME = st.one_of(st.text(alphabet="abcXY-_. é", min_size=1, max_size=6), st.text(max_size=8))
# any float: huge (1e308, whose sum overflows), NaN and infinities (sent as JSON literals)
WEIGHT = st.one_of(st.floats(0, 1e6), st.just(1e308), st.floats())


Live = LiveService


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp(f"fuzzstate_{request.param}")
    with live_service(request.param, tmp, TOKEN, "fzs") as service:
        yield service


def check_store(store: EventStore) -> None:
    """The store invariants (see the module docstring)."""
    t = store.events
    with store.engine.connect() as conn:
        rows = conn.execute(
            t.select().where(t.c.type.in_(("exposure", "click", "conversion")))
        ).all()
    exposures: Counter[tuple[Any, ...]] = Counter()
    claims: Counter[tuple[Any, ...]] = Counter()
    per_request: Counter[tuple[Any, ...]] = Counter()
    for r in rows:
        key = (r.experiment, r.variant, r.unit_id, r.item_id)
        if r.type == "exposure":
            assert r.request_id is not None and r.position is not None, r
            assert r.event_id == f"{r.request_id}:{r.position}", "exposure not from the service"
            exposures[key] += 1
        else:
            assert r.item_id is not None, r
            claims[(r.type, *key)] += 1
            if r.request_id is not None:
                per_request[(r.type, r.experiment, r.request_id, r.item_id)] += 1
    for (kind, *key), n in claims.items():
        assert n <= exposures[tuple(key)], f"{n} {kind}s for {exposures[tuple(key)]} exposures"
    assert all(n == 1 for n in per_request.values()), per_request
    for raw in store.load_experiments():
        total = sum(v["weight"] for v in raw["variants"])
        assert math.isclose(total, 1.0, rel_tol=1e-9), raw
        parse_spec(raw)


class ServiceMachine(RuleBasedStateMachine):
    """Random traffic and admin changes; invariants checked after every step."""

    live: Live

    def __init__(self) -> None:
        super().__init__()
        self.served: list[dict[str, Any]] = []
        self.n = 0

    def _send(self, method: str, path: str, payload: object) -> httpx.Response:
        """JSON as a careless client writes it: NaN/Infinity literals, escaped lone surrogates
        (httpx's own encoder refuses both)."""
        body = json.dumps(payload, allow_nan=True, ensure_ascii=True)
        headers = {**ADMIN, "content-type": "application/json"}
        return self.live.client.request(method, path, content=body, headers=headers)

    def _ok(self, r: httpx.Response) -> httpx.Response:
        assert r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text)
        return r

    @rule(
        unit=st.sampled_from([f"fz{i}" for i in range(6)]),
        exp=st.sampled_from(EXPERIMENTS),
        k=st.integers(1, 4),
    )
    def recommend(self, unit: str, exp: str, k: int) -> None:
        r = self._ok(
            self.live.client.post(
                "/v1/recommend", json={"unit_id": unit, "experiment": exp, "k": k}
            )
        )
        body = r.json()
        if r.status_code == 200 and body["variant"] is not None:
            for it in body["items"]:
                self.served.append(
                    {
                        "experiment": exp,
                        "variant": body["variant"],
                        "unit_id": unit,
                        "item_id": it["item_id"],
                        "position": it["position"],
                        "request_id": body["request_id"],
                    }
                )

    @rule(data=st.data(), size=st.integers(1, 6))
    def post_events(self, data: st.DataObject, size: int) -> None:
        events = []
        for _ in range(size):
            base = (
                data.draw(st.sampled_from(self.served))
                if self.served
                else {"experiment": "exp1", "variant": "control", "unit_id": "fz0", "item_id": "i1"}
            )
            ev: dict[str, Any] = {
                **base,
                "type": data.draw(
                    st.sampled_from(["click", "click", "conversion", "exposure", "covariate"])
                ),
                "event_id": data.draw(st.sampled_from(["e0", "e1", *[f"n{self.n}"] * 3])),
            }
            self.n += 1
            if ev["type"] == "covariate":
                ev["value"] = data.draw(st.floats(-1e6, 1e6))
            mutation = data.draw(
                st.sampled_from(
                    ["none", "variant", "item", "no_request", "position", "unit", "drop_item", "ts"]
                )
            )
            if mutation == "variant":
                ev["variant"] = data.draw(st.sampled_from(["control", "treatment", "a", "b", "zz"]))
            elif mutation == "item":
                ev["item_id"] = data.draw(st.sampled_from([f"i{j}" for j in range(6)]))
            elif mutation == "no_request":
                ev.pop("request_id", None)
                ev.pop("position", None)
            elif mutation == "position":
                ev["position"] = data.draw(st.integers(0, 5))
            elif mutation == "unit":
                ev["unit_id"] = data.draw(st.sampled_from([f"fz{i}" for i in range(6)]))
            elif mutation == "drop_item":
                ev.pop("item_id", None)
            elif mutation == "ts":
                ev["ts"] = data.draw(
                    st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"])
                )
            events.append(ev)
        r = self._ok(self.live.client.post("/v1/events", json={"events": events}))
        if r.status_code in (200, 409, 422) and isinstance(r.json(), dict):
            body = r.json()
            assert body["accepted"] + body["rejected"] == len(events), body

    @rule(data=st.data(), n=st.integers(2, 4), by_request=st.booleans())
    def hammer(self, data: st.DataObject, n: int, by_request: bool) -> None:
        """Several clicks on one served item (fresh ids): only the bound may be accepted."""
        if not self.served:
            return
        base = dict(data.draw(st.sampled_from(self.served)))
        if not by_request:
            base.pop("request_id")
        events = []
        for _ in range(n):
            self.n += 1
            events.append({**base, "type": "click", "event_id": f"h{self.n}"})
        self._ok(self.live.client.post("/v1/events", json={"events": events}))

    @rule(
        exp=st.sampled_from(["fz-a", "fz-b"]),
        names=st.lists(NAME, min_size=2, max_size=3),
        weights=st.lists(WEIGHT, min_size=3, max_size=3),
        models=st.lists(st.sampled_from(MODELS), min_size=3, max_size=3),
        sticky=st.booleans(),
    )
    def create(
        self, exp: str, names: list[str], weights: list[float], models: list[str], sticky: bool
    ) -> None:
        spec = {
            "id": exp,
            "sticky": sticky,
            "variants": [
                {"name": n, "weight": w, "model": m}
                for n, w, m in zip(names, weights, models, strict=False)
            ],
        }
        self._ok(self._send("POST", "/v1/admin/experiments", spec))

    @rule(exp=st.sampled_from(EXPERIMENTS), action=st.sampled_from(["start", "stop"]))
    def lifecycle(self, exp: str, action: str) -> None:
        self._ok(self.live.client.post(f"/v1/admin/experiments/{exp}/{action}", headers=ADMIN))

    @rule(exp=st.sampled_from(EXPERIMENTS), data=st.data())
    def weights(self, exp: str, data: st.DataObject) -> None:
        listed = self._ok(self.live.client.get("/v1/admin/experiments", headers=ADMIN)).json()
        specs = {e["id"]: [v["name"] for v in e["variants"]] for e in listed}
        keys = specs.get(exp, ["x", "y"])
        w = {k: data.draw(WEIGHT) for k in keys}
        self._ok(self._send("PUT", f"/v1/admin/experiments/{exp}/weights", {"weights": w}))

    @invariant()
    def store_is_consistent(self) -> None:
        check_store(self.live.store)


@pytest.mark.slow
def test_stateful_fuzz_keeps_store_invariants(live: Live) -> None:
    ServiceMachine.live = live
    run_state_machine_as_test(
        ServiceMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
