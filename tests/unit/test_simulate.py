"""Click model, session plan, population and simulator (against an in-process HTTP handler)."""

from __future__ import annotations

import json
import threading
import zlib
from collections import Counter
from typing import Any

import httpx
import numpy as np
import pytest

from abrec.data.types import Interactions
from abrec.errors import DataError
from abrec.simulate import (
    ClickModel,
    Population,
    SimulationConfig,
    SimulationError,
    Simulator,
    SimUser,
    experiment_spec,
    session_plan,
)

# --- click model ----------------------------------------------------------------------


def test_examination_closed_form() -> None:
    cm = ClickModel(eta=1.0)
    np.testing.assert_allclose(cm.examination(np.arange(4)), [1.0, 1 / 2, 1 / 3, 1 / 4])
    cm2 = ClickModel(eta=0.5)
    np.testing.assert_allclose(cm2.examination(np.array([3])), [0.5])
    np.testing.assert_allclose(ClickModel(eta=0.0).examination(np.arange(5)), np.ones(5))
    with pytest.raises(ValueError):
        cm.examination(np.array([-1]))


def test_attractiveness_hand_computed() -> None:
    cm = ClickModel(a_max=0.8, midpoint=3.5, slope=2.0, base_rate=0.05)
    r = np.array([np.nan, 3.5, 4.5, 1.0])
    expected = [0.05, 0.4, 0.8 / (1 + np.exp(-2.0)), 0.8 / (1 + np.exp(5.0))]
    np.testing.assert_allclose(cm.attractiveness(r), expected)
    # relevant (>= 4) items are far more attractive than unrated ones
    assert cm.attractiveness(np.array([4.0]))[0] > 10 * cm.base_rate


def test_click_probability_shape_and_bounds() -> None:
    cm = ClickModel(eta=1.0, a_max=1.0, slope=50.0, midpoint=0.0, noise=0.2, repeat_factor=0.5)
    pos = np.array([0, 1, 0, 0])
    r = np.array([5.0, 5.0, np.nan, 5.0])
    before = np.array([False, False, False, True])
    p = cm.click_probability(pos, r, before)
    # position 0, rated: 1*1 + 0.2 clipped to 1; position 1: 0.5 + 0.2; unrated: 0.01 + 0.2;
    # clicked before: 0.5 * 1 + 0.2
    np.testing.assert_allclose(p, [1.0, 0.7, 0.21, 0.7])


def test_sampled_click_rates_match_probabilities() -> None:
    cm = ClickModel(noise=0.01)
    n = 200_000
    pos = np.tile(np.arange(4), n // 4)
    r = np.tile(np.array([4.5, np.nan, 2.0, 5.0]), n // 4)
    clicks, conv = cm.sample(np.random.default_rng(7), pos, r)
    p = cm.click_probability(pos[:4], r[:4])
    rates = clicks.reshape(-1, 4).mean(axis=0)
    se = np.sqrt(p * (1 - p) / (n // 4))
    assert np.all(np.abs(rates - p) < 4.5 * se)
    # conversions happen only on clicks of items rated >= 4, at conversion_rate
    assert not np.any(conv & ~clicks)
    assert not conv.reshape(-1, 4)[:, [1, 2]].any()
    eligible = clicks.reshape(-1, 4)[:, [0, 3]]
    rate = conv.reshape(-1, 4)[:, [0, 3]].sum() / eligible.sum()
    assert abs(rate - cm.conversion_rate) < 4.5 * np.sqrt(0.25 / eligible.sum())


# --- session plan ---------------------------------------------------------------------


def _users(n: int) -> list[SimUser]:
    return [SimUser(str(i + 1), {"10": 5.0, "11": 4.0}, 3, float(i % 3)) for i in range(n)]


def test_session_plan_order_counts_and_seed() -> None:
    users = _users(400)
    plan = session_plan(users, sessions_mean=3.0, max_sessions=6, seed=1)
    assert plan == session_plan(users, sessions_mean=3.0, max_sessions=6, seed=1)
    assert plan != session_plan(users, sessions_mean=3.0, max_sessions=6, seed=2)
    per_user: dict[int, list[int]] = {}
    for u, s in plan:
        per_user.setdefault(u, []).append(s)
    assert set(per_user) == set(range(400))
    for sessions in per_user.values():
        assert sessions == list(range(len(sessions)))  # own order, no gaps
        assert 1 <= len(sessions) <= 6
    mean = len(plan) / 400
    # 1 + Poisson(2) truncated at 6: mean slightly below 3
    assert 2.75 < mean < 3.1
    # new users keep arriving: the last quarter of the plan still has first sessions
    assert any(s == 0 for _, s in plan[3 * len(plan) // 4 :])


# --- population -----------------------------------------------------------------------


def _split() -> tuple[Interactions, Interactions]:
    user_ids = np.array([1, 2, 3])
    item_ids = np.array([100, 200, 300, 400, 500])
    train = Interactions(
        user_idx=np.array([0, 0, 1, 2, 2, 2]),
        item_idx=np.array([0, 1, 0, 0, 1, 2]),
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=np.array([4.0, 3.0, 5.0, 2.0, 4.0, 4.0]),
    )
    test = Interactions(
        user_idx=np.array([0, 0, 1, 1]),
        item_idx=np.array([2, 3, 1, 4]),
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=np.array([5.0, 1.0, 4.5, 3.0]),
    )
    return train, test


def test_population_from_split() -> None:
    train, test = _split()
    pop = Population.from_split(train, test, covariate="train_ratings")
    assert [u.unit_id for u in pop.users] == ["1", "2"]  # user 3 has no held-out rating
    assert pop.users[0].test_ratings == {"300": 5.0, "400": 1.0}
    assert pop.users[1].test_ratings == {"200": 4.5, "500": 3.0}
    assert [u.covariate for u in pop.users] == [2.0, 1.0]
    np.testing.assert_array_equal(
        pop.users[0].ratings_for(["400", "999", "300"]), [1.0, np.nan, 5.0]
    )
    assert [u.covariate for u in Population.from_split(train, test, covariate="none").users] == [
        None,
        None,
    ]
    assert len(pop.sample(1, seed=0)) == 1
    assert pop.sample(1, seed=3) == pop.sample(1, seed=3)
    with pytest.raises(DataError):
        Population.from_split(train, test.subset(np.array([], dtype=np.int64)))
    with pytest.raises(DataError):
        Population.from_split(
            train, Interactions(test.user_idx, test.item_idx, test.user_ids, test.item_ids)
        )


def test_pre_click_covariate_follows_relevance() -> None:
    train, test = _split()
    # deterministic click model: clicks exactly on items rated above the midpoint at positions < 2
    cm = ClickModel(eta=50.0, a_max=1.0, slope=100.0, midpoint=3.75, base_rate=0.0, noise=0.0)
    pop = Population.from_split(train, test, click_model=cm, pre_sessions=2, k=2, seed=0)
    # user 1 (saw 100, 200): popularity top-2 of unseen = [300, 400] -> rates 5 (pos 0) and 1
    # user 2 (saw 100): top-2 = [200, 300] -> 200 rated 4.5 at pos 0; clicked twice
    # (second session keeps repeat_factor=0.2 -> probability 0.2, so 1 or 2 clicks)
    cov = {u.unit_id: u.covariate for u in pop.users}
    assert cov["1"] is not None and cov["2"] is not None
    assert 1.0 <= cov["1"] <= 2.0 and 1.0 <= cov["2"] <= 2.0
    again = Population.from_split(train, test, click_model=cm, pre_sessions=2, k=2, seed=0)
    assert again == pop


# --- simulator against an in-process service ------------------------------------------


class FakeService:
    """Deterministic stand-in for the HTTP API contract: hash assignment, fixed lists."""

    def __init__(self, fail_events: bool = False) -> None:
        self.lock = threading.Lock()
        self.n = 0
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[Any]] = {}
        self.fail_events = fail_events

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/recommend":
            unit = body["unit_id"]
            variant = "control" if zlib.crc32(unit.encode()) % 2 else "treatment"
            items = ["10", "11", "12"] if variant == "treatment" else ["12", "11", "10"]
            with self.lock:
                self.n += 1
                rid = f"r{self.n}"
                self.requests[rid] = {"unit": unit, "variant": variant, "items": items, "n": self.n}
                self.history.setdefault(unit, []).append((body.get("context") or {}).get("history"))
            return httpx.Response(
                200,
                json={
                    "request_id": rid,
                    "experiment": body["experiment"],
                    "variant": variant,
                    "model": variant,
                    "items": [
                        {"item_id": i, "position": p, "score": 1.0 - p / 10}
                        for p, i in enumerate(items[: body["k"]])
                    ],
                },
            )
        if request.url.path == "/v1/events":
            if self.fail_events:
                return httpx.Response(422, json={"detail": "bad"})
            with self.lock:
                new = 0
                for ev in body["events"]:
                    if ev["event_id"] not in self.events:
                        self.events[ev["event_id"]] = ev
                        new += 1
            return httpx.Response(200, json={"accepted": len(body["events"]), "inserted": new})
        return httpx.Response(404)


def _run(seed: int, **kw: Any) -> tuple[FakeService, Simulator]:
    svc = FakeService()
    cfg = SimulationConfig(
        experiment="exp", seed=seed, sessions_mean=3.0, k=3, concurrency=4, event_batch=7, **kw
    )
    sim = Simulator("http://sim.test", _users(60), cfg, transport=httpx.MockTransport(svc))
    sim.run()
    return svc, sim


def _signature(svc: FakeService) -> Counter[tuple[Any, ...]]:
    return Counter(
        (e["unit_id"], e["variant"], e["type"], e.get("item_id"), e.get("position"), e.get("value"))
        for e in svc.events.values()
    )


def test_simulator_events_are_consistent_and_reproducible() -> None:
    svc, sim = _run(seed=11)
    prog = sim.progress()
    assert prog.sessions_done == prog.sessions_planned == len(sim.plan) == len(svc.requests)
    assert prog.units_seen == 60 and not prog.stopped_early
    assert prog.exposures == 3 * prog.sessions_done
    clicks = [e for e in svc.events.values() if e["type"] == "click"]
    convs = [e for e in svc.events.values() if e["type"] == "conversion"]
    covs = [e for e in svc.events.values() if e["type"] == "covariate"]
    assert len(clicks) == prog.clicks > 0 and len(convs) == prog.conversions
    assert prog.events_inserted == prog.events_sent == len(svc.events)
    # one covariate per unit, with that unit's variant and value
    assert sorted(e["unit_id"] for e in covs) == sorted(u.unit_id for u in _users(60))
    for e in clicks + convs + covs:
        if e["type"] != "covariate":
            req = svc.requests[e["request_id"]]
            assert req["unit"] == e["unit_id"] and req["variant"] == e["variant"]
            assert req["items"][e["position"]] == e["item_id"]
    for e in covs:
        assert e["value"] == float(int(e["unit_id"]) - 1) % 3
    # every conversion follows a click on the same shown item
    click_keys = {(e["request_id"], e["position"]) for e in clicks}
    assert all((e["request_id"], e["position"]) in click_keys for e in convs)
    # later sessions send the items clicked in earlier sessions as context.history
    by_unit: dict[str, list[tuple[int, str]]] = {}
    for e in clicks:
        by_unit.setdefault(e["unit_id"], []).append(
            (svc.requests[e["request_id"]]["n"], e["item_id"])
        )
    for unit, hist in svc.history.items():
        assert hist[0] is None
        seen: set[str] = set()
        reqs = sorted(r["n"] for r in svc.requests.values() if r["unit"] == unit)
        for n, sent in zip(reqs, hist, strict=True):
            assert (sorted(seen) or None) == sent
            seen |= {i for m, i in by_unit.get(unit, []) if m == n}
    # same seed -> same events (request ids aside); another seed -> different clicks
    svc2, _ = _run(seed=11)
    assert _signature(svc2) == _signature(svc)
    svc3, _ = _run(seed=12)
    assert _signature(svc3) != _signature(svc)


def test_simulator_stop_flushes_pending_events() -> None:
    svc = FakeService()
    cfg = SimulationConfig(experiment="exp", seed=1, k=3, concurrency=2, event_batch=10_000)
    holder: dict[str, Simulator] = {}

    def on_session(p: Any) -> None:
        if p.sessions_done >= 20:
            holder["sim"].stop()

    sim = Simulator(
        "http://sim.test",
        _users(80),
        cfg,
        on_session=on_session,
        transport=httpx.MockTransport(svc),
    )
    holder["sim"] = sim
    prog = sim.run()
    assert prog.stopped_early
    assert 20 <= prog.sessions_done < prog.sessions_planned
    assert prog.events_sent == len(svc.events) > 0  # batch never filled: flushed on stop


def test_simulator_rejected_events_raise() -> None:
    svc = FakeService(fail_events=True)
    cfg = SimulationConfig(experiment="exp", seed=1, k=3, concurrency=2, event_batch=1)
    sim = Simulator("http://sim.test", _users(10), cfg, transport=httpx.MockTransport(svc))
    with pytest.raises(SimulationError, match="422"):
        sim.run()


def test_experiment_spec_aa() -> None:
    ab = experiment_spec("e1", "ease", "hybrid")
    aa = experiment_spec("e1", "ease", "hybrid", aa=True)
    assert [v["model"] for v in ab["variants"]] == ["ease", "hybrid"]
    assert [v["model"] for v in aa["variants"]] == ["ease", "ease"]
    assert ab["control"] == "control" and ab["seed"] == "e1"
