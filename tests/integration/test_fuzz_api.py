"""Property-based fuzzing of the live service from its own OpenAPI schema.

Schemathesis (v4 API) generates valid and invalid requests for every operation and
sends them over loopback HTTP to a `ServiceThread` on a real SQLite store and on
PostgreSQL. Every response must be no 5xx, have a status code, content type and body
that the OpenAPI document declares for that operation (response-schema conformance).
Admin operations are called with the admin token so their handlers, not only the 401
path, get fuzzed. Examples per operation: `ABREC_FUZZ_EXAMPLES` (default 40).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pg_gate import PG_URL, require_postgres
from schemathesis import Case
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.transport import Response
from test_serve_support import (
    build_bundle,
    experiment_toml,
    start_service,
    unique_prefix,
    write_config,
)

from abrec.serve.app import create_app
from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.serve.schemas import ValidationProblem
from abrec.store import EventStore

TOKEN = "fuzz-admin-token"
FUZZ_EXPERIMENTS = experiment_toml(
    "ease-vs-popularity",
    [("control", 0.5, "popularity"), ("treatment", 0.5, "ease")],
    status="running",
    guardrails=["exposures_per_unit"],
)
EXAMPLES = int(os.environ.get("ABREC_FUZZ_EXAMPLES", "40"))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceThread]:
    tmp: Path = tmp_path_factory.mktemp(f"fuzz_{request.param}")
    bundle, _ = build_bundle(tmp / "bundle")
    if request.param == "postgres":
        require_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'events.db'}"
    prefix = unique_prefix("fuzz")
    # the ids used by the schema's examples, so example requests reach the deep paths
    cfg_path = write_config(tmp, url, bundle, FUZZ_EXPERIMENTS, table_prefix=prefix)
    thread = start_service(ServeConfig.from_toml(cfg_path), TOKEN)
    try:
        yield thread
    finally:
        thread.stop()
        if request.param == "postgres":
            store = EventStore.from_url(url, table_prefix=prefix)
            store.metadata.drop_all(store.engine)
            store.dispose()


# The schema is the app's own OpenAPI document (built without starting anything); the
# requests go to the live thread. (`schemathesis.pytest.from_fixture` is not used: its
# lazy loader touches `Function._nodeid`, which pytest 9 removed.)
SPEC = create_app(ServeConfig(bundle=Path("unused"))).openapi()
schema = schemathesis.openapi.from_dict(SPEC)


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@schemathesis.check
def conforms_to_the_schema(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Status code and body as the operation documents them."""
    status_code_conformance(ctx, response, case)
    response_schema_conformance(ctx, response, case)
    return None


def _headers(case: Case) -> dict[str, str] | None:
    needs_token = "/admin/" in case.path or case.path.endswith("/results")
    return {"Authorization": f"Bearer {TOKEN}"} if needs_token else None


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_responses_conform_to_the_schema(case: Case, live: ServiceThread) -> None:
    checks = [not_a_server_error, content_type_conformance, conforms_to_the_schema]
    case.call_and_validate(base_url=live.url, headers=_headers(case), checks=checks, timeout=30)


def _documented(operation: str, path: str, status: int) -> bool:
    responses = SPEC["paths"][path][operation]["responses"]
    return str(status) in responses


def test_unparsable_body_gets_a_documented_status(live: ServiceThread) -> None:
    """A body that is not UTF-8 JSON is a documented 422 (FastAPI alone answers 400)."""
    r = httpx.post(
        f"{live.url}/v1/recommend",
        content=b"\xdc\x96\\\xff",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422
    assert _documented("post", "/v1/recommend", r.status_code), r.status_code
    assert r.json() == {
        "detail": [
            {"loc": ["body"], "msg": "the body is not valid UTF-8 JSON", "type": "json_invalid"}
        ]
    }


def test_events_without_a_body_answers_its_documented_422(live: ServiceThread) -> None:
    """No body: a 422 whose body is one of the documented 422 shapes of /v1/events."""
    r = httpx.post(f"{live.url}/v1/events", timeout=10)
    assert r.status_code == 422
    schema = SPEC["paths"]["/v1/events"]["post"]["responses"]["422"]["content"]
    refs = {s["$ref"].rsplit("/", 1)[1] for s in schema["application/json"]["schema"]["anyOf"]}
    assert refs == {"EventsReply", "ValidationProblem"}
    body = ValidationProblem.model_validate(r.json())
    assert body.detail and body.detail[0].loc[0] == "body"


@pytest.mark.slow
def test_fuzzing_reached_every_route(live: ServiceThread) -> None:
    """Runs after the fuzz cases (file order): the service saw requests on each route."""
    text = httpx.get(f"{live.url}/metrics", timeout=10).text
    for route in (
        "/v1/recommend",
        "/v1/events",
        "/v1/admin/experiments",
        "/v1/experiments/{experiment_id}/results",
        "/healthz",
    ):
        counts = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("abrec_request_latency_seconds_count") and f'route="{route}"' in line
        ]
        assert sum(counts) >= 5, (route, counts)
    assert 'status="5xx"' not in text
    # the examples reached past validation: assignments happened and results were computed
    assert re.search(r"abrec_assignments_total [1-9]", text)
    assert re.search(
        r'abrec_request_latency_seconds_count\{method="GET",'
        r'route="/v1/experiments/\{experiment_id\}/results",status="2xx"\} [1-9]',
        text,
    )
