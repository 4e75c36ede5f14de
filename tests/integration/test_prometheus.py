"""A real Prometheus (Debian package) scrapes a running service with the shipped config.

Skipped without the `prometheus` binary, failed under CI=true (`.ci/run` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from pydantic import SecretStr
from test_serve_support import build_bundle, free_port, served_fields, write_config

from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.store import EventStore

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
TOKEN = "prometheus-scrape-token"


def _binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        reason = "prometheus is not installed (apt-get install prometheus)"
        if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    return path


def _config(tmp: Path, target: str) -> Path:
    """The shipped prometheus.yml with this test's target, a 1 s interval, the token file
    and an absolute path to the shipped alerts.yml."""
    cfg: dict[str, Any] = yaml.safe_load((PROM / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(PROM / r) for r in cfg["rule_files"]]
    (job,) = cfg["scrape_configs"]
    job["static_configs"][0]["targets"] = [target]
    (tmp / "token").write_text(TOKEN)
    job["authorization"] = {"type": "Bearer", "credentials_file": str(tmp / "token")}
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def prometheus_and_service(
    tmp_path: Path,
) -> Iterator[tuple[httpx.Client, ServiceThread, EventStore]]:
    binary = _binary()
    bundle, _ = build_bundle(tmp_path / "bundle")
    url = f"sqlite:///{tmp_path / 'events.db'}"
    config = ServeConfig.from_toml(
        write_config(tmp_path, url, bundle, monitor_interval_s=0.5)
    ).model_copy(update={"metrics_token": SecretStr(TOKEN)})
    store = EventStore.from_url(url)
    with ServiceThread(config) as svc:
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={_config(tmp_path, f'127.0.0.1:{svc.port}')}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "prometheus.log", "w"),  # noqa: SIM115
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                yield client, svc, store
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            store.dispose()


def _query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    r = client.get("/api/v1/query", params={"query": expr})
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _until(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = check()
        except (httpx.HTTPError, OSError):
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_prometheus_scrapes_the_service_and_evaluates_the_rules(
    prometheus_and_service: tuple[httpx.Client, ServiceThread, EventStore],
) -> None:
    prom, svc, store = prometheus_and_service
    with httpx.Client(base_url=svc.url, timeout=30) as api:
        for u in range(40):
            served_fields(api, f"u{u}", k=3)
    e = store.events.c
    with store.engine.connect() as conn:
        stored = dict(
            conn.execute(
                sa.select(e.variant, sa.func.count())
                .where(e.experiment == "exp1", e.type == "exposure")
                .group_by(e.variant)
            ).all()
        )
    assert sum(stored.values()) == 120

    def scraped() -> dict[str, float] | None:
        rows = _query(prom, "max by (variant) (abrec_experiment_exposures_total)")
        got = {r["metric"]["variant"]: float(r["value"][1]) for r in rows}
        return got if got == {k: float(v) for k, v in stored.items()} else None

    # The scrape goes through the bearer token, the monitor thread ran on its own.
    _until("the monitor's exposure totals in Prometheus", scraped)
    up = _query(prom, 'up{job="abrec"}')
    assert [float(r["value"][1]) for r in up] == [1.0]
    # One alert expression, evaluated by Prometheus: the SRM p-value exists, no mismatch.
    assert _query(prom, "max by (experiment) (abrec_experiment_srm_pvalue)")
    assert _query(prom, "max by (experiment) (abrec_experiment_srm_pvalue) < 0.001") == []
    p99 = 'histogram_quantile(0.99, sum by (le) (rate(abrec_request_latency_seconds_bucket{route="/v1/recommend"}[1m])))'
    _until("a p99 of /v1/recommend", lambda: _query(prom, p99))

    def rules_loaded() -> list[dict[str, Any]] | None:
        groups = prom.get("/api/v1/rules").json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if len(rules) == 9 and all(r["health"] == "ok" for r in rules) else None

    rules = _until("the alert rules evaluated without error", rules_loaded)
    assert {r["name"] for r in rules} >= {"AbrecSampleRatioMismatch", "AbrecHigh5xxRate"}
    firing = [r["name"] for r in rules if r["state"] == "firing"]
    assert firing == []
