"""Interleaving and bandit experiments through the real service and store (SQLite and
PostgreSQL): merged lists, what each exposure logs, click credit, bandit weights and the
probabilities logged with assignments and exposures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from test_serve_support import LiveService, experiment_toml, live_service

from abrec.experiment.analysis import ExperimentResults
from abrec.interleave import parse_balanced_source
from abrec.serve.bandits import bandit_weights, update_bandit
from abrec.store import Event, Impression

TOKEN = "adaptive-admin-token-1"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

EXPERIMENTS = "\n".join(
    [
        experiment_toml(
            "il", [("champion", 1, "cooc"), ("candidate", 1, "ease")],
            status="running", type="interleaving",
        ),
        experiment_toml(
            "bal", [("champion", 1, "cooc"), ("candidate", 1, "popularity")],
            status="running", type="interleaving",
        ).replace('type = "interleaving"', 'type = "interleaving"\ninterleaving = { method = "balanced" }'),
        experiment_toml(
            "ban", [("a", 1, "cooc"), ("b", 1, "popularity")],
            status="running", type="bandit",
        ).replace(
            'type = "bandit"',
            'type = "bandit"\nbandit = { burn_in = 100, min_share = 0.1, update_every_s = 3600.0 }',
        ),
    ]
)  # fmt: skip

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    tmp: Path = tmp_path_factory.mktemp(f"adaptive_{request.param}")
    with live_service(request.param, tmp, TOKEN, "adapt", experiments=EXPERIMENTS) as svc:
        yield svc


def _services(live: LiveService) -> Any:
    return live.thread.app.state.services


def _recommend(live: LiveService, exp: str, unit: str, k: int = 10) -> dict:
    r = live.client.post("/v1/recommend", json={"unit_id": unit, "experiment": exp, "k": k})
    assert r.status_code == 200, r.text
    return r.json()


def _exposures(live: LiveService, exp: str, request_id: str) -> list[Impression]:
    rows = [imp for imp in live.store.impressions(exp) if imp.request_id == request_id]
    assert len(rows) == 1
    return rows


def _ranking(live: LiveService, model: str, unit: str, k: int) -> list[str]:
    """The model's own top-k for the unit, from the running service's engine."""
    ranked: list[str] = _services(live).engine.recommend(model, unit, k).item_ids
    return ranked


def test_team_draft_list_sources_and_propensities(live: LiveService) -> None:
    out = _recommend(live, "il", "u3")
    assert out["variant"] == "interleaved"
    assert out["model"] == "cooc+ease"
    items = [it["item_id"] for it in out["items"]]
    sources = [it["source"] for it in out["items"]]
    assert len(items) == 10 and len(set(items)) == 10
    assert set(sources) <= {"champion", "candidate"}
    assert abs(sources.count("champion") - sources.count("candidate")) <= 1
    # each team's items appear in the order of that ranker's own list
    for team, model in (("champion", "cooc"), ("candidate", "ease")):
        ranking = _ranking(live, model, "u3", 10)
        mine = [i for i, s in zip(items, sources, strict=True) if s == team]
        assert [ranking.index(i) for i in mine] == sorted(ranking.index(i) for i in mine)
    (imp,) = _exposures(live, "il", out["request_id"])
    assert imp.items == items and imp.sources == sources
    assert all(p is not None and 0 < p <= 1 for p in imp.propensities)
    # an interleaved list mixes two models' incomparable scores: none is logged for drift
    logged = live.store.recent_exposures("il", 1000)
    mine = logged["request_id"] == out["request_id"]
    assert mine.sum() == 10 and np.isnan(logged["score"][mine]).all()
    # the first slot is either ranker's top item, each with probability 1/2 (when they differ)
    tops = {_ranking(live, "cooc", "u3", 1)[0], _ranking(live, "ease", "u3", 1)[0]}
    if len(tops) == 2:
        assert imp.propensities[0] == pytest.approx(0.5)


def test_clicks_are_credited_to_the_contributing_ranker(live: LiveService) -> None:
    n = 25
    events = []
    for u in range(10, 10 + n):
        out = _recommend(live, "il", f"u{u}")
        first = next(it for it in out["items"] if it["source"] == "candidate")
        events.append({
            "event_id": f"{out['request_id']}:click", "experiment": "il",
            "variant": "interleaved", "unit_id": f"u{u}", "type": "click",
            "item_id": first["item_id"], "request_id": out["request_id"],
        })  # fmt: skip
    r = live.client.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text
    res = ExperimentResults.parse(
        live.client.get("/v1/experiments/il/results", headers=ADMIN).content
    )
    assert res.type == "interleaving" and res.interleaving is not None
    p = res.interleaving.primary
    assert (p.control, p.treatment) == ("champion", "candidate")
    assert p.wins == n and p.losses == 0
    assert p.ties == res.interleaving.n_units - n  # units with impressions but no click
    assert p.p_value == pytest.approx(stats.binomtest(n, n, 0.5).pvalue, rel=1e-9)
    assert p.preference.estimate > 0


def test_balanced_sources_hold_each_rankers_rank(live: LiveService) -> None:
    out = _recommend(live, "bal", "u5", k=8)
    ranks = {
        "champion": _ranking(live, "cooc", "u5", 8),
        "candidate": _ranking(live, "popularity", "u5", 8),
    }
    for it in out["items"]:
        ra, rb = parse_balanced_source(it["source"])
        for r, ranking in ((ra, ranks["champion"]), (rb, ranks["candidate"])):
            if it["item_id"] in ranking:
                assert r == ranking.index(it["item_id"]) + 1
            else:
                assert r == float("inf")


def test_clients_cannot_set_propensity_or_source(live: LiveService) -> None:
    out = _recommend(live, "il", "u40")
    item = out["items"][0]
    bad = {
        "event_id": "e-prop", "experiment": "il", "variant": "interleaved", "unit_id": "u40",
        "type": "click", "item_id": item["item_id"], "request_id": out["request_id"],
        "propensity": 0.5,
    }  # fmt: skip
    r = live.client.post("/v1/events", json={"events": [bad]})
    assert r.status_code == 422
    assert (
        "propensity, source, score and model_version are logged by the service"
        in r.json()["errors"][0]["message"]
    )


def test_bandit_logs_assignment_probabilities_and_updates_weights(live: LiveService) -> None:
    out = _recommend(live, "ban", "u1")
    assert out["variant"] in {"a", "b"}
    (imp,) = _exposures(live, "ban", out["request_id"])
    assert imp.propensities == [pytest.approx(0.5)] * len(imp.items)  # burn-in: equal split
    frame = live.store.assignment_frame("ban")
    assert frame["propensity"].tolist() == [pytest.approx(0.5)]
    # 120 units per arm, arm "a" clicking far more: past the burn-in, Thompson sampling
    # moves the weight to "a" (P(a best) ~ 1, floored at min_share for "b")
    events = []
    for arm, clicks in (("a", 6), ("b", 1)):
        for u in range(120):
            unit = f"{arm}-unit{u}"
            live.store.save_assignment("ban", unit, arm, 0.5)
            for pos in range(10):
                rid = f"{unit}-req"
                events.append(Event(event_id=f"{rid}:{pos}", experiment="ban", variant=arm,
                                    unit_id=unit, type="exposure", item_id=f"i{pos}",
                                    position=pos, request_id=rid, propensity=0.5))  # fmt: skip
                if pos < clicks:
                    events.append(Event(event_id=f"{rid}:{pos}:c", experiment="ban", variant=arm,
                                        unit_id=unit, type="click", item_id=f"i{pos}",
                                        position=pos, request_id=rid))  # fmt: skip
    live.store.append(events)
    registry = _services(live).registry
    w = bandit_weights(live.store, registry.get("ban"))
    assert w["a"] == pytest.approx(0.9) and w["b"] == pytest.approx(0.1)
    new = update_bandit(registry, "ban")
    assert new.weights == [pytest.approx(0.9), pytest.approx(0.1)]
    # a new unit is assigned under the new weights and logs that probability
    got = [_recommend(live, "ban", f"late{u}") for u in range(40)]
    probs = {g["variant"]: _exposures(live, "ban", g["request_id"])[0].propensities[0] for g in got}
    assert probs.get("a") == pytest.approx(0.9)
    assert probs.get("b", 0.1) == pytest.approx(0.1)
    assert sum(g["variant"] == "a" for g in got) >= 28  # ~36 expected
    # the returning first unit keeps its arm and its logged probability
    again = _recommend(live, "ban", "u1")
    assert again["variant"] == out["variant"]
    assert _exposures(live, "ban", again["request_id"])[0].propensities[0] == pytest.approx(0.5)
    res = ExperimentResults.parse(
        live.client.get("/v1/experiments/ban/results", headers=ADMIN).content
    )
    assert res.type == "bandit" and res.bandit is not None and res.srm is None
    assert "biased" in res.bandit.note
    # independent reference: IPS and Hajek values from the stored per-unit rows
    units, assigned = live.store.unit_frame("ban"), live.store.assignment_frame("ban")
    prob = dict(zip(assigned["unit_id"], assigned["propensity"], strict=True))
    seen = units["exposures"] > 0
    y = units["clicks"][seen] / units["exposures"][seen]
    p = np.array([prob[u] for u in units["unit_id"][seen]])
    for arm in ("a", "b"):
        mine = units["variant"][seen] == arm
        got = res.bandit.value(arm)
        assert got.ips.estimate == pytest.approx(np.sum(y[mine] / p[mine]) / seen.sum())
        assert got.hajek.estimate == pytest.approx(np.sum(y[mine] / p[mine]) / np.sum(1 / p[mine]))
        assert got.naive.estimate == pytest.approx(y[mine].mean())
