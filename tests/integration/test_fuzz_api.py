"""Property-based fuzzing of the live service from its own OpenAPI schema: never a 5xx.

Schemathesis (v4 API) generates valid and invalid requests for every operation and
sends them over loopback HTTP to a `ServiceThread` on a real SQLite store. Admin
operations are called with the admin token so their handlers, not only the 401 path,
get fuzzed. Examples per operation: `ABREC_FUZZ_EXAMPLES` (default 40).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import Case  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from test_serve_support import (  # noqa: E402
    build_bundle,
    experiment_toml,
    start_service,
    write_config,
)

from abrec.serve.app import create_app  # noqa: E402
from abrec.serve.config import ServeConfig  # noqa: E402
from abrec.serve.runner import ServiceThread  # noqa: E402

TOKEN = "fuzz-admin-token"
FUZZ_EXPERIMENTS = experiment_toml(
    "ease-vs-popularity",
    [("control", 0.5, "popularity"), ("treatment", 0.5, "ease")],
    status="running",
    guardrails=["exposures_per_unit"],
)
EXAMPLES = int(os.environ.get("ABREC_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceThread]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    bundle, _ = build_bundle(tmp / "bundle")
    # the ids used by the schema's examples, so example requests reach the deep paths
    cfg_path = write_config(tmp, f"sqlite:///{tmp / 'events.db'}", bundle, FUZZ_EXPERIMENTS)
    thread = start_service(ServeConfig.from_toml(cfg_path), TOKEN)
    yield thread
    thread.stop()


# The schema is the app's own OpenAPI document (built without starting anything); the
# requests go to the live thread. (`schemathesis.pytest.from_fixture` is not used: its
# lazy loader touches `Function._nodeid`, which pytest 9 removed.)
schema = schemathesis.openapi.from_dict(create_app(ServeConfig(bundle=Path("unused"))).openapi())


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Case, live: ServiceThread) -> None:
    needs_token = "/admin/" in case.path or case.path.endswith("/results")
    headers = {"Authorization": f"Bearer {TOKEN}"} if needs_token else None
    case.call_and_validate(
        base_url=live.url, headers=headers, checks=[not_a_server_error], timeout=30
    )


@pytest.mark.slow
def test_fuzzing_reached_every_route(live: ServiceThread) -> None:
    """Runs after the fuzz cases (file order): the service saw requests on each route."""
    import httpx

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
