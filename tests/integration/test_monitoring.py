"""The service's monitor over real HTTP and a real store: exported series, drift, tokens.

One service (SQLite and PostgreSQL) serves three experiments: ``exp1`` (training users,
``cooc`` against ``embed``, an embedding recommender so the embedding check runs),
``cold`` (unknown users served by ``ease``: their cold-start scores are a known, large
shift from ``ease``'s scores on training users) and a draft. The monitor thread's
interval is long; the tests run it with ``run_once``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import scipy.sparse as sp
import sqlalchemy as sa
import yaml
from pg_gate import PG_URL, require_postgres
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from test_serve_support import Cooc, experiment_toml, synthetic, unique_prefix, write_config
from typer.testing import CliRunner

from abrec.cli import app
from abrec.data.types import Interactions, ItemCatalog
from abrec.experiment.analysis import ExperimentResults
from abrec.models.base import Recommender
from abrec.models.bundle import ModelBundle
from abrec.models.registry import build_model
from abrec.monitor import collect
from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.stats.drift import drift_check
from abrec.store import EventStore

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRICS_TOKEN = "metrics-token-for-tests"
READ_TOKEN = "read-token-for-tests"
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


class EmbedRec(Recommender):
    """Scores items by the dot product of their (seeded, unit-norm) embeddings with the
    mean embedding of the user's training items; exposes ``item_embeddings`` like the LM
    recommenders do."""

    name = "embed"

    def __init__(self) -> None:
        super().__init__()
        self.item_embeddings: np.ndarray | None = None

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        emb = np.random.default_rng(3).normal(size=(train.n_items, 8))
        self.item_embeddings = emb / np.linalg.norm(emb, axis=1, keepdims=True)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self.item_embeddings is not None and self._train is not None
        x: sp.csr_matrix = self._train[users]
        return np.asarray((x @ self.item_embeddings) @ self.item_embeddings.T, dtype=np.float32)

    def _state(self) -> dict[str, Any]:
        return {"item_embeddings": self.item_embeddings}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.item_embeddings = state["item_embeddings"]


EXPERIMENTS = "\n".join(
    [
        experiment_toml(
            "exp1",
            [("control", 0.5, "cooc"), ("treatment", 0.5, "embed")],
            status="running",
            guardrails=["exposures_per_unit"],
        ).replace("variants = [", "sequential_look_every = 10\nvariants = ["),
        experiment_toml("cold", [("a", 0.5, "ease"), ("b", 0.5, "popularity")], status="running"),
        experiment_toml("draft1", [("a", 1, "cooc"), ("b", 1, "cooc")]),
    ]
)


@dataclass
class Live:
    client: httpx.Client
    store: EventStore
    thread: ServiceThread
    inter: Interactions
    config_path: Path

    @property
    def monitor(self) -> Any:
        return self.thread.app.state.services.monitor


def _bundle(path: Path) -> Interactions:
    inter, cat = synthetic()
    models: dict[str, Recommender] = {
        "cooc": Cooc().fit(inter, cat),
        "embed": EmbedRec().fit(inter, cat),
        "ease": build_model("ease", lambda_=10.0).fit(inter, cat),
        "popularity": build_model("popularity").fit(inter, cat),
    }
    ModelBundle(models=models, user_ids=inter.user_ids, item_ids=inter.item_ids).save(path)
    return inter


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp(f"monitor_{request.param}")
    inter = _bundle(tmp / "bundle")
    prefix = unique_prefix("mon")
    if request.param == "postgres":
        require_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'events.db'}"
    cfg_path = write_config(
        tmp, url, tmp / "bundle", EXPERIMENTS, table_prefix=prefix, monitor_interval_s=3600.0
    )
    config = ServeConfig.from_toml(cfg_path).model_copy(
        update={"metrics_token": SecretStr(METRICS_TOKEN), "read_token": SecretStr(READ_TOKEN)}
    )
    thread = ServiceThread(config).start()
    store = EventStore.from_url(url, table_prefix=prefix)
    try:
        with httpx.Client(base_url=thread.url, timeout=30) as client:
            live = Live(client, store, thread, inter, cfg_path)
            _traffic(live)
            yield live
    finally:
        thread.stop()
        if request.param == "postgres":
            store.metadata.drop_all(store.engine)
        store.dispose()


def _recommend(live: Live, unit: str, exp: str, k: int = 5) -> dict[str, Any]:
    r = live.client.post("/v1/recommend", json={"unit_id": unit, "experiment": exp, "k": k})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _traffic(live: Live) -> None:
    """Training users in exp1 (twice each, every fourth a third time; a click on every third
    list); unknown users in cold (three times each); one 404 and one 422."""
    clicks = []
    for rep in range(3):
        for u in range(60):
            if rep == 2 and u % 4:
                continue
            body = _recommend(live, f"u{u}", "exp1")
            if u % 3 == 0:
                it = body["items"][0]
                clicks.append(
                    {
                        "event_id": f"click-{rep}-{u}",
                        "experiment": "exp1",
                        "variant": body["variant"],
                        "unit_id": f"u{u}",
                        "type": "click",
                        "item_id": it["item_id"],
                        "position": it["position"],
                        "request_id": body["request_id"],
                    }
                )
    r = live.client.post("/v1/events", json={"events": clicks})
    assert r.status_code == 200, r.text
    for _ in range(3):
        for u in range(40):
            _recommend(live, f"new{u}", "cold")
    assert live.client.get("/v1/experiments/nope/results", headers=READ).status_code == 404
    assert live.client.post("/v1/recommend", json={"unit_id": "x"}).status_code == 422


def _scrape(live: Live) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = live.client.get("/metrics", headers=SCRAPE)
    assert r.status_code == 200, r.text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def _value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    got = [v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(got) == 1, f"{name}{labels}: {samples.get(name)}"
    return got[0]


#: A metric name of ours inside a PromQL expression (functions and labels never start so).
_METRIC = re.compile(r"\babrec_[a-zA-Z0-9_]*[a-zA-Z0-9]\b")


def queried_metric_names() -> set[str]:
    """Every `abrec_*` sample name an alert rule or a Grafana panel (or variable) queries."""
    exprs: list[str] = []
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        exprs += [rule["expr"] for rule in group["rules"]]
    dash = json.loads((DEPLOY / "grafana" / "abrec.json").read_text())
    for panel in dash["panels"]:
        exprs += [t["expr"] for t in panel["targets"]]
    for var in dash["templating"]["list"]:
        exprs.append(var["definition"])
    names: set[str] = set()
    for expr in exprs:
        # Drop label matchers' values ("...") so a quoted string is never read as a name.
        names |= set(_METRIC.findall(re.sub(r'"[^"]*"', '""', expr)))
    return names


def test_every_queried_metric_is_exported(live: Live) -> None:
    live.monitor.run_once()
    exported = set(_scrape(live))
    names = queried_metric_names()
    assert {"abrec_experiment_srm_pvalue", "abrec_request_latency_seconds_bucket"} <= names
    assert len(names) >= 15
    missing = sorted(names - exported)
    assert not missing, f"queried but not exported: {missing}"


def test_experiment_series_match_the_store_and_the_results(live: Live) -> None:
    live.monitor.run_once()
    m = _scrape(live)
    res = live.client.get("/v1/experiments/exp1/results", headers=READ).json()
    e = live.store.events.c
    q = (
        sa.select(e.variant, e.type, sa.func.count())
        .where(e.experiment == "exp1")
        .group_by(e.variant, e.type)
    )
    with live.store.engine.connect() as conn:
        counts = {(v, t): n for v, t, n in conn.execute(q)}
    for variant in ("control", "treatment"):
        assert (
            _value(m, "abrec_experiment_exposures_total", experiment="exp1", variant=variant)
            == counts[(variant, "exposure")]
        )
        assert _value(
            m, "abrec_experiment_clicks_total", experiment="exp1", variant=variant
        ) == counts.get((variant, "click"), 0)
        units = next(v["n"] for v in res["variants"] if v["variant"] == variant)
        assert _value(m, "abrec_experiment_units", experiment="exp1", variant=variant) == units
    assert _value(m, "abrec_experiment_srm_pvalue", experiment="exp1") == pytest.approx(
        res["srm"]["p_value"], rel=1e-12
    )
    (guard,) = res["comparisons"][0]["guardrails"]
    breached = _value(
        m,
        "abrec_experiment_guardrail_breached",
        experiment="exp1",
        treatment="treatment",
        metric="exposures_per_unit",
    )
    assert breached == (0.0 if guard["passed"] else 1.0)
    # Only running experiments carry labels; the draft is absent.
    assert not [lab for lab, _ in m["abrec_experiment_units"] if lab["experiment"] == "draft1"]
    assert _value(m, "abrec_experiments_monitored") == 2
    assert _value(m, "abrec_store_pending_events") == 0
    assert _value(m, "abrec_store_write_failures_total") == 0
    assert 0 <= _value(m, "abrec_store_seconds_since_last_commit") < 600
    assert _value(m, "abrec_monitor_runs_total", outcome="ok") >= 1


def test_drift_in_results_and_gauges(live: Live) -> None:
    snap = live.monitor.run_once()
    r = live.client.get("/v1/experiments/exp1/results", headers=READ)
    res = r.json()
    drift = {(d["check"], d["model"]): d for d in res["drift"]}
    parsed = ExperimentResults.parse(r.text).drift
    assert parsed is not None and {(c.check, c.model) for c in parsed} == set(drift)
    assert set(drift) == {
        (c, m) for c in ("scores", "popularity", "embedding") for m in ("cooc", "embed")
    }
    for d in drift.values():
        assert set(d) >= {"check", "model", "psi", "ks_statistic", "ks_pvalue", "alarm",
                          "n_reference", "n_serving"}  # fmt: skip
        assert d["n_serving"] >= 100 and d["psi"] is not None
        # Training users served as in training: no alarm.
        assert d["alarm"] is False, d
    assert drift[("embedding", "embed")]["cosine_shift"] is not None
    # The served scores are the logged ones: recompute the check from the store.
    e = live.store.events.c
    with live.store.engine.connect() as conn:
        logged = [
            float(s)
            for (s,) in conn.execute(
                sa.select(e.score).where(
                    e.experiment == "exp1", e.type == "exposure", e.variant == "control"
                )
            )
        ]
    ref = live.monitor.drift.reference("cooc", 5)
    again = drift_check("scores", "cooc", ref.scores, logged)
    assert drift[("scores", "cooc")]["psi"] == pytest.approx(again.psi, rel=1e-12)
    assert drift[("scores", "cooc")]["ks_pvalue"] == pytest.approx(again.ks_pvalue, rel=1e-9)
    # Unknown users get ease's cold-start scores: a large, known shift.
    cold = {(c.check, c.model): c for c in snap.drift}
    assert cold[("scores", "ease")].alarm and (cold[("scores", "ease")].psi or 0) > 0.2
    m = _scrape(live)
    assert _value(m, "abrec_drift_alarm", check="scores", model="ease") == 1.0
    assert _value(m, "abrec_drift_psi", check="scores", model="cooc") == pytest.approx(
        drift[("scores", "cooc")]["psi"], rel=1e-12
    )
    # Every model's embedding check uses the embeddings of the bundle's embedding model.
    assert cold[("embedding", "ease")].note == "embeddings of model 'embed'"


def test_drift_runs_on_its_own_schedule(tmp_path: Path) -> None:
    """The monitor thread refreshes health every monitor_interval_s; drift waits for
    drift_interval_s, and runs in between keep the last drift checks."""
    inter = _bundle(tmp_path / "bundle")
    assert inter.n_users == 60
    cfg = ServeConfig.from_toml(
        write_config(
            tmp_path,
            f"sqlite:///{tmp_path / 'e.db'}",
            tmp_path / "bundle",
            EXPERIMENTS,
            monitor_interval_s=0.5,
            drift_interval_s=3600.0,
        )
    ).model_copy(update={"read_token": SecretStr(READ_TOKEN)})
    with ServiceThread(cfg) as thread, httpx.Client(base_url=thread.url) as client:
        monitor = thread.app.state.services.monitor
        for u in range(60):
            r = client.post(
                "/v1/recommend", json={"unit_id": f"u{u}", "experiment": "exp1", "k": 5}
            )
            assert r.status_code == 200
        deadline = time.monotonic() + 30
        while monitor.snapshot is None or not monitor.snapshot.experiments[1].variants[0].units:
            assert time.monotonic() < deadline, "the monitor thread did not run"
            time.sleep(0.1)
        assert monitor.snapshot.drift is None  # not due yet
        res = client.get("/v1/experiments/exp1/results", headers=READ).json()
        assert res["drift"] is None
        assert client.get("/metrics").status_code == 200  # no metrics token: open
        with_drift = monitor.run_once()
        assert with_drift.drift is not None
        kept = monitor.run_once(drift=False)
        assert kept.drift is with_drift.drift and kept.at >= with_drift.at


def test_metrics_token_is_required_when_set(live: Live) -> None:
    assert live.client.get("/metrics").status_code == 401
    bad = live.client.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert "ABREC_METRICS_TOKEN" in bad.json()["detail"]
    # The read token is not the metrics token.
    assert live.client.get("/metrics", headers=READ).status_code == 401
    assert live.client.get("/metrics", headers=SCRAPE).status_code == 200


def test_exposures_log_the_served_score_and_clients_cannot_set_it(live: Live) -> None:
    body = _recommend(live, "u7", "exp1", k=3)
    e = live.store.events.c
    with live.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(e.position, e.score).where(e.request_id == body["request_id"])
        ).all()
    assert sorted(rows) == [(it["position"], pytest.approx(it["score"])) for it in body["items"]]
    it = body["items"][0]
    click = {
        "event_id": "scored-click",
        "experiment": "exp1",
        "variant": body["variant"],
        "unit_id": "u7",
        "type": "click",
        "item_id": it["item_id"],
        "position": 0,
        "request_id": body["request_id"],
        "score": 0.5,
    }
    r = live.client.post("/v1/events", json={"events": [click]})
    assert r.status_code == 422
    assert "score" in r.json()["errors"][0]["message"]


def test_scores_stay_finite_numbers(live: Live) -> None:
    e = live.store.events.c
    with live.store.engine.connect() as conn:
        scores = [s for (s,) in conn.execute(sa.select(e.score).where(e.type == "exposure"))]
    assert scores and all(s is not None and math.isfinite(s) for s in scores)


def test_monitor_cli_prints_the_same_snapshot(live: Live) -> None:
    snap = live.monitor.run_once()
    result = CliRunner().invoke(app, ["monitor", "--config", str(live.config_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["drift"] == [c.to_dict() for c in snap.drift]
    assert [e["experiment"] for e in out["experiments"]] == ["cold", "exp1"]
    assert out["experiments"] == [e.to_dict() for e in snap.experiments]
    text = CliRunner().invoke(app, ["monitor", "--config", str(live.config_path)])
    assert text.exit_code == 0, text.output
    assert re.search(r"drift ease/scores: psi=\S+ .*ALARM", text.stdout)
    assert "exp1 (ab): SRM p=" in text.stdout


def test_monitor_cli_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["monitor", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert (
        result.output.strip().startswith("error: ") and len(result.output.strip().splitlines()) == 1
    )


def test_label_cardinality_is_capped(live: Live) -> None:
    registry = live.thread.app.state.services.registry
    snap = collect(live.store, registry.list(), None, max_experiments=1)
    assert [e.experiment for e in snap.experiments] == ["cold"]  # first running by id
    assert snap.unmonitored == 1 and snap.drift is None
