"""Issue 9 over real loopback HTTP, on SQLite and PostgreSQL: no request crashes, poisons or
distorts the service; replies are short, never echo input and carry security headers."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient
from test_serve_support import (
    LiveService,
    build_bundle,
    live_service,
    write_config,
)

from abrec.errors import StoreError
from abrec.experiment.registry import ExperimentRegistry
from abrec.serve.app import MAX_REPORTED_ERRORS, create_app
from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.serve.schemas import MAX_EVENT_ERRORS
from abrec.serve.security import CSP_API, CSP_DOCS, SECURITY_HEADERS
from abrec.serve.services import DatabaseUnavailableError, wait_for_database
from abrec.store import EventStore

ADMIN_TOKEN = "hardening-admin-token"
READ_TOKEN = "hardening-read-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
JSON = {"content-type": "application/json"}
MAX_BODY = 64 * 1024
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


Live = LiveService


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp(f"harden_{request.param}")
    with live_service(
        request.param, tmp, ADMIN_TOKEN, "hard", read_token=READ_TOKEN, max_body_bytes=MAX_BODY
    ) as service:
        yield service


def stored_ids(live: Live) -> set[str]:
    return {str(raw.get("id")) for raw in live.store.load_experiments()}


def served(live: Live, unit: str, k: int = 2) -> dict[str, Any]:
    """A recommendation of exp1 for `unit` (so clicks can reference its exposures)."""
    r = live.client.post("/v1/recommend", json={"unit_id": unit, "experiment": "exp1", "k": k})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["variant"] is not None
    return body


def click(rec: dict[str, Any], unit: str, event_id: str, pos: int = 0, **kw: Any) -> dict[str, Any]:
    item = rec["items"][pos]
    return {
        "event_id": event_id,
        "experiment": "exp1",
        "variant": rec["variant"],
        "unit_id": unit,
        "type": "click",
        "item_id": item["item_id"],
        "position": item["position"],
        "request_id": rec["request_id"],
        **kw,
    }


def assert_short_problem(r: httpx.Response, status: int, *, not_in: tuple[str, ...] = ()) -> None:
    assert r.status_code == status, r.text
    assert len(r.content) < 4000, len(r.content)
    body = r.json()  # always valid JSON
    assert "detail" in body and '"input"' not in r.text
    for text in not_in:
        assert text not in r.text


def assert_security_headers(r: httpx.Response, csp: str = CSP_API) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (name, r.status_code, r.request.url)
    assert r.headers.get("content-security-policy") == csp


# ---------------------------------------------------------------- 1, 2: admin specs


def spec(exp_id: str, *variants: tuple[str, Any, str]) -> dict[str, Any]:
    return {
        "id": exp_id,
        "variants": [{"name": n, "weight": w, "model": m} for n, w, m in variants],
    }


@pytest.mark.parametrize(
    "body",
    [
        spec("w-inf", ("a", 1e308, "cooc"), ("b", 1e308, "cooc_b")),  # was 201, then no start
        spec("w-zero", ("a", 0, "cooc"), ("b", 0, "cooc_b")),
        spec("w-str", ("a", "1", "cooc"), ("b", 1, "cooc_b")),
        spec("w-bool", ("a", True, "cooc"), ("b", 1, "cooc_b")),
        spec("n-nul", ("a\x00", 1, "cooc"), ("b", 1, "cooc_b")),  # was 201, then 500s
        spec("n-ctl", ("a\x1b[31m", 1, "cooc"), ("b", 1, "cooc_b")),
        spec("n-rtl", ("a\u202eb", 1, "cooc"), ("b", 1, "cooc_b")),
        spec("n-blank", ("   ", 1, "cooc"), ("b", 1, "cooc_b")),
        spec("n-long", ("x" * 200, 1, "cooc"), ("b", 1, "cooc_b")),
        spec("m-ctl", ("a", 1, "cooc\x00"), ("b", 1, "cooc_b")),
        spec("bad id\x00", ("a", 1, "cooc"), ("b", 1, "cooc_b")),
        {**spec("many", *[(f"v{i}", 1, "cooc") for i in range(500)])},
    ],
)
def test_admin_rejects_specs_that_would_not_load(live: Live, body: dict[str, Any]) -> None:
    r = live.client.post("/v1/admin/experiments", json=body, headers=ADMIN)
    assert_short_problem(r, 422, not_in=("x" * 200,))
    assert body["id"] not in stored_ids(live)


def test_admin_weights_update_is_validated(live: Live) -> None:
    body = spec("wts", ("a", 1, "cooc"), ("b", 1, "cooc_b"))
    assert live.client.post("/v1/admin/experiments", json=body, headers=ADMIN).status_code == 201
    for weights in ({"a": 1e308, "b": 1e308}, {"a": 0, "b": 0}, {"a": -1, "b": 2}, {"a": "1"}):
        r = live.client.put(
            "/v1/admin/experiments/wts/weights", json={"weights": weights}, headers=ADMIN
        )
        assert_short_problem(r, 422)
    for raw in (b'{"weights": {"a": NaN, "b": 1}}', b'{"weights": {"a": Infinity, "b": 1}}'):
        r = live.client.put("/v1/admin/experiments/wts/weights", content=raw, headers=ADMIN | JSON)
        assert_short_problem(r, 422)
    (latest,) = [raw for raw in live.store.load_experiments() if raw["id"] == "wts"]
    assert [v["weight"] for v in latest["variants"]] == [0.5, 0.5]  # unchanged
    # and everything stored still loads
    assert ExperimentRegistry(live.store).skipped == {}


def test_admin_nan_weight_on_create_is_422(live: Live) -> None:
    raw = (
        b'{"id": "nan-create", "variants": [{"name": "a", "weight": NaN, "model": "cooc"},'
        b' {"name": "b", "model": "cooc_b"}]}'
    )
    r = live.client.post("/v1/admin/experiments", content=raw, headers=ADMIN | JSON)
    assert_short_problem(r, 422)
    assert "nan-create" not in stored_ids(live)


def bad_spec_rows(store: EventStore) -> None:
    """Specs an older version could store: weights summing to 0, a NUL variant name."""
    good = {
        "id": "good-one",
        "variants": [
            {"name": "a", "weight": 0.5, "model": "m"},
            {"name": "b", "weight": 0.5, "model": "m"},
        ],
    }
    store.save_experiment(good)
    store.save_experiment(
        {**good, "id": "zero-weights", "variants": [{**v, "weight": 0.0} for v in good["variants"]]}
    )
    store.save_experiment(
        {
            **good,
            "id": "nul-variant",
            "variants": [{**good["variants"][0], "name": "a\x00"}, good["variants"][1]],
        }
    )


def test_registry_skips_bad_stored_specs_loudly(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    bad_spec_rows(store)
    with caplog.at_level(logging.WARNING, logger="abrec.experiment.registry"):
        reg = ExperimentRegistry(store)
    assert [s.id for s in reg.list()] == ["good-one"]
    assert set(reg.skipped) == {"'zero-weights'", "'nul-variant'"}
    assert "sum to 0" in reg.skipped["'zero-weights'"]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("zero-weights" in m and "sum to 0" in m for m in logged), logged
    assert any("nul-variant" in m for m in logged), logged
    # a valid spec saved under a skipped id replaces it
    reg.create({**spec("zero-weights", ("a", 1, "m"), ("b", 1, "m"))})
    assert "zero-weights" in {s.id for s in ExperimentRegistry(store).list()}


def test_service_starts_despite_a_bad_stored_spec(
    store: EventStore, table_prefix: str, tmp_path: Path
) -> None:
    bad_spec_rows(store)
    bundle, _ = build_bundle(tmp_path / "bundle")
    url = store.engine.url.render_as_string(hide_password=False)
    cfg = ServeConfig(
        store_url=url, bundle=bundle, table_prefix=table_prefix, admin_token=SecretStr("t")
    )
    with ServiceThread(cfg) as svc:
        r = httpx.get(f"{svc.url}/v1/admin/experiments", headers={"Authorization": "Bearer t"})
        assert r.status_code == 200 and [e["id"] for e in r.json()] == ["good-one"]


# ---------------------------------------------------------------- 4, 5: 500 → 422


@pytest.mark.parametrize(
    "raw",
    [
        b'{"unit_id": "u1", "experiment": "exp1", "k": NaN}',
        b'{"unit_id": "u1", "experiment": "exp1", "k": Infinity}',
        b'{"unit_id": "u1", "experiment": "exp1", "k": -Infinity}',
        b'{"unit_id": "\\ud800", "experiment": "exp1", "k": 3}',
        b'{"unit_id": "u1", "experiment": "\\udfff", "k": 3}',
        b'{"unit_id": "u1", "experiment": "exp1", "context": {"history": ["\\ud800"]}}',
        b'{"unit_id": "u1", "experiment": "exp1", "k": 3, "\\ud800": 1}',
    ],
)
def test_recommend_nan_and_surrogates_are_422(live: Live, raw: bytes) -> None:
    r = live.client.post("/v1/recommend", content=raw, headers=JSON)
    assert_short_problem(r, 422)


@pytest.mark.parametrize("raw", [b'{"events": NaN}', b'{"events": Infinity}', b"NaN"])
def test_events_nan_body_is_422(live: Live, raw: bytes) -> None:
    r = live.client.post("/v1/events", content=raw, headers=JSON)
    assert_short_problem(r, 422)


def test_bad_events_are_rejected_one_by_one_and_good_ones_stored(live: Live) -> None:
    rec = served(live, "hard-u1", k=2)
    before = live.store.count("exp1")
    good0 = click(rec, "hard-u1", "hard-good-0", pos=0)
    good1 = click(rec, "hard-u1", "hard-good-1", pos=1)
    bad = [
        {**good0, "event_id": "hard-bad-ts1", "ts": "9999-12-31T23:00:00-14:00"},
        {**good0, "event_id": "hard-bad-ts2", "ts": "0001-01-01T00:00:00+14:00"},
        {**good0, "event_id": "hard-bad-pos", "position": "3"},
        {**good0, "event_id": "hard-bad-bool", "position": True},
        {**good0, "event_id": "hard-bad-item", "item_id": "i\u202e1"},
        {**good0, "event_id": "hard-bad-req", "request_id": "r\x07"},
        {**good0, "event_id": "hard-bad-unit", "unit_id": "   "},
        {**good0, "event_id": "hard-bad-sur", "unit_id": "\ud800"},
        {**good0, "event_id": "hard-bad-val", "type": "covariate", "value": "NaN-ish"},
    ]
    batch = [good0, *bad, good1]
    # NaN and a lone surrogate as raw JSON (httpx would refuse to encode them)
    text = json.dumps({"events": batch}, ensure_ascii=True)
    text = text.replace('"NaN-ish"', "NaN")
    r = live.client.post("/v1/events", content=text.encode(), headers=JSON)
    assert r.status_code == 422, r.text
    body = r.json()
    assert [e["index"] for e in body["errors"]] == list(range(1, len(bad) + 1))
    assert body["rejected"] == len(bad)
    assert body["accepted"] == 2 and body["inserted"] == 2
    assert "1970" in body["errors"][0]["message"] and "1970" in body["errors"][1]["message"]
    assert live.store.count("exp1") == before + 2


def test_validation_replies_never_echo_input(live: Live) -> None:
    huge = "z" * 50_000
    for path, body in (
        ("/v1/recommend", {"unit_id": huge, "experiment": "exp1"}),
        ("/v1/recommend", {"unit_id": "u", "experiment": "exp1", "k": huge}),
        ("/v1/events", {"events": huge}),
        ("/v1/events", {"events": [], huge: 1}),
    ):
        r = live.client.post(path, json=body)
        assert_short_problem(r, 422, not_in=("zzzzzzzzzz",))
    r = live.client.post("/v1/admin/experiments", json={"id": huge, "variants": []}, headers=ADMIN)
    assert_short_problem(r, 422, not_in=("zzzzzzzzzz",))


def test_422_replies_are_bounded(live: Live) -> None:
    bad = [{"event_id": f"b{i}", "type": "click"} for i in range(MAX_BODY // 40)]  # < MAX_BODY
    r = live.client.post("/v1/events", json={"events": bad})
    assert r.status_code == 422
    body = r.json()
    assert len(body["errors"]) == MAX_EVENT_ERRORS and body["rejected"] == len(bad)
    assert [e["index"] for e in body["errors"]] == list(range(MAX_EVENT_ERRORS))
    assert len(r.content) < 20_000
    many = {"id": "many-errors", "variants": [{"name": 1, "weight": "x"} for _ in range(60)]}
    r = live.client.post("/v1/admin/experiments", json=many, headers=ADMIN)
    assert r.status_code == 422
    assert len(r.json()["detail"]) == MAX_REPORTED_ERRORS and r.json()["more_errors"] > 0


# ---------------------------------------------------------------- 6: body limit


def test_body_over_the_limit_is_413_before_parsing(live: Live) -> None:
    before = live.store.count()
    big = json.dumps({"events": [{"event_id": "x" * 100}] * (MAX_BODY // 100 + 10)}).encode()
    assert len(big) > MAX_BODY
    r = live.client.post("/v1/events", content=big, headers=JSON)
    assert_short_problem(r, 413)
    assert str(MAX_BODY) in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"events": ['
        for _ in range(MAX_BODY // 1000 + 5):
            yield b'"' + b"y" * 1000 + b'",'
        yield b"1]}"

    r = live.client.post("/v1/events", content=chunks(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert_short_problem(r, 413)
    r = live.client.post("/v1/recommend", content=big, headers=JSON)
    assert_short_problem(r, 413)
    assert_security_headers(r)
    assert live.store.count() == before


# ---------------------------------------------------------------- strict types


@pytest.mark.parametrize(
    "body",
    [
        {"unit_id": "u1", "experiment": "exp1", "k": "3"},
        {"unit_id": "u1", "experiment": "exp1", "k": True},
        {"unit_id": "u1", "experiment": "exp1", "k": 3.0},
        {"unit_id": "   ", "experiment": "exp1"},
        {"unit_id": "u1\u200f", "experiment": "exp1"},
        {"unit_id": "u1", "experiment": "exp1", "context": {"history": ["i1\x00"]}},
        {"unit_id": 42, "experiment": "exp1"},
    ],
)
def test_recommend_is_strict(live: Live, body: dict[str, Any]) -> None:
    r = live.client.post("/v1/recommend", json=body)
    assert_short_problem(r, 422)


def test_k_true_no_longer_serves_one_item(live: Live) -> None:
    ok = live.client.post("/v1/recommend", json={"unit_id": "k1", "experiment": "exp1", "k": 1})
    assert ok.status_code == 200 and len(ok.json()["items"]) == 1


# ---------------------------------------------------------------- who may read what


def test_results_need_a_read_or_admin_token(live: Live) -> None:
    path = "/v1/experiments/exp1/results"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": READ_TOKEN}):
        r = live.client.get(path, headers=headers)
        assert_short_problem(r, 401, not_in=("not set", "configured", READ_TOKEN, ADMIN_TOKEN))
        assert_security_headers(r)
    served(live, "reader-1")
    assert live.client.get(path, headers=READ).status_code in (200, 409)
    assert live.client.get(path, headers=ADMIN).status_code in (200, 409)


def test_experiment_list_needs_a_token_and_reads_are_not_writes(live: Live) -> None:
    assert live.client.get("/v1/admin/experiments").status_code == 401
    listed = live.client.get("/v1/admin/experiments", headers=READ)
    assert listed.status_code == 200 and "exp1" in {e["id"] for e in listed.json()}
    body = spec("read-cannot-write", ("a", 1, "cooc"), ("b", 1, "cooc_b"))
    assert live.client.post("/v1/admin/experiments", json=body, headers=READ).status_code == 401
    assert live.client.post("/v1/admin/experiments/exp1/stop", headers=READ).status_code == 401
    assert "read-cannot-write" not in stored_ids(live)


def test_unknown_experiment_404_lists_no_ids(live: Live) -> None:
    r = live.client.get("/v1/experiments/nope/results", headers=READ)
    assert_short_problem(r, 404, not_in=("exp1", "draft1"))
    r = live.client.post("/v1/admin/experiments/nope/start", headers=ADMIN)
    assert_short_problem(r, 404, not_in=("exp1", "draft1"))


def test_open_routes_reveal_no_ids_models_or_addresses(live: Live) -> None:
    served(live, "open-1")
    secrets_ = ("exp1", "draft1", "cooc", "control", "treatment", "127.0.0.1", "5432", "sqlite")
    for path in ("/healthz", "/readyz", "/metrics"):
        r = live.client.get(path)
        assert r.status_code == 200, (path, r.text)
        for text in secrets_:
            assert text not in r.text, (path, text)
        assert_security_headers(r)
    detailed = live.client.get("/readyz", headers=READ).json()
    assert "cooc" in detailed["checks"]["models"] and detailed["checks"]["store"] == "ok"


def test_security_headers_on_every_kind_of_reply(live: Live) -> None:
    replies = [
        live.client.post("/v1/recommend", json={"unit_id": "h1", "experiment": "exp1"}),
        live.client.post("/v1/recommend", json={"unit_id": ""}),
        live.client.get("/no-such-route"),
        live.client.get("/openapi.json"),
        live.client.post("/v1/admin/experiments", json={}),
    ]
    assert [r.status_code for r in replies] == [200, 422, 404, 200, 401]
    for r in replies:
        assert_security_headers(r)


def test_docs_are_off_by_default_and_offline_safe(live: Live) -> None:
    assert live.client.get("/docs").status_code == 404
    assert live.client.get("/redoc").status_code == 404
    app = create_app(ServeConfig(bundle=Path("unused"), docs=True))
    client = TestClient(app)  # the docs page needs no lifespan (no models, no store)
    r = client.get("/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()
    assert r.headers["content-security-policy"] == CSP_DOCS
    assert r.headers["x-frame-options"] == "DENY"
    assert client.get("/openapi.json").headers["content-security-policy"] == CSP_API


def test_store_failures_are_503_without_addresses(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    import abrec.serve.routes.experiments as results_route

    services = live.thread.app.state.services
    leak = 'connection to server at "db.internal" (10.1.2.3), port 5432 failed'

    def failing_submit(events: object) -> concurrent.futures.Future[int]:
        fut: concurrent.futures.Future[int] = concurrent.futures.Future()
        fut.set_exception(RuntimeError(leak))
        return fut

    def failing_analyze(*args: object, **kw: object) -> None:
        raise StoreError(f"could not read experiment: {leak}")

    def failing_count(*args: object, **kw: object) -> int:
        raise RuntimeError(leak)

    async def failing_loop_submit(events: object) -> int:
        raise RuntimeError(leak)

    monkeypatch.setattr(services.writer, "submit", failing_submit)
    if services.loop_writer is not None:  # PostgreSQL: the event loop writes exposures
        monkeypatch.setattr(services.loop_writer, "submit", failing_loop_submit)
    monkeypatch.setattr(results_route, "analyze", failing_analyze)
    monkeypatch.setattr(services.store, "count", failing_count)
    r = live.client.post("/v1/recommend", json={"unit_id": "h503", "experiment": "exp1"})
    assert_short_problem(r, 503, not_in=("db.internal", "10.1.2.3", "5432", "idempotent"))
    r = live.client.get("/v1/experiments/exp1/results", headers=READ)
    assert_short_problem(r, 503, not_in=("db.internal", "10.1.2.3", "5432", "idempotent"))
    r = live.client.post("/v1/events", json={"events": [{"event_id": "x", "type": "covariate"}]})
    assert r.status_code == 422  # invalid: never reaches the store
    r = live.client.get("/readyz", headers=READ)
    assert r.status_code == 503 and "db.internal" not in r.text and "5432" not in r.text
    assert r.json()["checks"]["store"].startswith("unavailable")
    assert_security_headers(r)


def test_start_route_description_matches_behaviour(live: Live) -> None:
    op = live.client.get("/openapi.json").json()["paths"][
        "/v1/admin/experiments/{experiment_id}/start"
    ]["post"]
    text = op.get("description", "") + op.get("summary", "")
    assert "stopped → running" not in text and "409" in text


# ---------------------------------------------------------------- DB down at start


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_wait_for_database_retries_with_backoff_then_one_line() -> None:
    url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{_closed_port()}/test"
    waits: list[float] = []
    with pytest.raises(DatabaseUnavailableError) as info:
        wait_for_database(url, retries=3, timeout_s=1.0, backoff_s=0.25, sleep=waits.append)
    assert waits == [0.25, 0.5, 1.0]
    message = str(info.value)
    assert "\n" not in message and "4 attempt(s)" in message
    assert "hunter2" not in message and "***" in message


def test_wait_for_database_returns_once_reachable(tmp_path: Path) -> None:
    waits: list[float] = []
    wait_for_database(
        f"sqlite:///{tmp_path / 'ok.db'}", retries=3, timeout_s=1, backoff_s=1, sleep=waits.append
    )
    assert waits == []


def test_abrec_serve_with_database_down_exits_3_with_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from abrec.cli import app

    bundle, _ = build_bundle(tmp_path / "bundle")
    url = f"postgresql+psycopg://postgres:hunter2@127.0.0.1:{_closed_port()}/test"
    cfg = write_config(tmp_path, url, bundle, db_connect_retries=1, db_retry_backoff_s=0.0)
    result = CliRunner().invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "unreachable after 2 attempt(s)" in lines[0]
    assert "Traceback" not in result.output and "hunter2" not in result.output


def test_abrec_serve_reads_the_read_token_from_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from abrec.cli import app

    bundle, _ = build_bundle(tmp_path / "bundle")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'e.db'}", bundle)
    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda served, **kw: apps.append(served))
    monkeypatch.setenv("ABREC_READ_TOKEN", " r3ad-token ")
    assert CliRunner().invoke(app, ["serve", "--config", str(cfg)]).exit_code == 0
    config = apps[-1].state.config
    assert config.read_token.get_secret_value() == "r3ad-token"
    assert "r3ad" not in repr(config) and "r3ad" not in config.model_dump_json()
    cfg.write_text(cfg.read_text().replace("[batch]", 'read_token = "in-file"\n[batch]'))
    result = CliRunner().invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2 and "ABREC_READ_TOKEN" in result.output
    assert "in-file" not in result.output
