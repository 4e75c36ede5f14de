"""The live dashboard `/ui` in a real browser (Playwright driving Debian's Chromium) against a
running service on PostgreSQL with events flowing: counts shown equal SQL counts on the
store, the page updates when new events arrive, no console errors, the token never leaves
the page in a URL and no admin route is called.

Chromium comes from Debian (`apt-get install chromium`, `.ci/run` installs it); Playwright's
own browser download is not used. Without Chromium or Playwright the browser tests skip
with the reason, except under CI=true where they fail.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from pg_gate import PG_URL, in_ci, require_postgres
from pydantic import SecretStr
from test_serve_support import build_bundle, experiment_toml, unique_prefix, write_config

from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.serve.security import CSP_UI

pytestmark = pytest.mark.postgres

CHROMIUM = os.environ.get("ABREC_CHROMIUM", "/usr/bin/chromium")
ADMIN_TOKEN = "dash-admin-token-1"
READ_TOKEN = "dash-read-token-7"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
EXP = "cooc-vs-pop"
EXPERIMENTS = (
    experiment_toml(
        EXP,
        [("control", 0.5, "cooc"), ("treatment", 0.5, "popularity")],
        status="running",
        primary_metric="ctr",
        guardrails=["ctr"],
        description="cooc vs popularity",
    )
    + "\n"
    + experiment_toml("later", [("a", 1, "cooc"), ("b", 1, "popularity")])
)


def _missing(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (fail under CI=true) when Playwright or Debian's Chromium is absent."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        _missing(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")


@dataclass
class Live:
    url: str
    store_url: str
    prefix: str
    http: httpx.Client
    sent: set[str] = field(default_factory=set)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(13))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    require_postgres(PG_URL)
    tmp = tmp_path_factory.mktemp("dashboard")
    bundle, _ = build_bundle(tmp / "bundle")
    prefix = unique_prefix("dash")
    config = ServeConfig.from_toml(
        write_config(tmp, PG_URL, bundle, experiments=EXPERIMENTS, table_prefix=prefix)
    ).model_copy(
        update={"admin_token": SecretStr(ADMIN_TOKEN), "read_token": SecretStr(READ_TOKEN)}
    )
    thread = ServiceThread(config).start()
    try:
        with httpx.Client(base_url=thread.url, timeout=30) as http:
            yield Live(thread.url, PG_URL, prefix, http)
    finally:
        thread.stop()
        engine = sa.create_engine(PG_URL)
        md = sa.MetaData()
        md.reflect(engine, only=lambda name, _md: name.startswith(prefix))
        md.drop_all(engine)
        engine.dispose()


def send_traffic(live: Live, units: range) -> None:
    """`/v1/recommend` for each unit (5 exposures each), then clicks on some served items
    (more often for the treatment), acknowledged by `/v1/events`."""
    events: list[dict[str, Any]] = []
    for u in units:
        unit = f"user{u}"
        r = live.http.post("/v1/recommend", json={"unit_id": unit, "experiment": EXP, "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["variant"] in {"control", "treatment"}
        p = 0.3 if body["variant"] == "treatment" else 0.2
        for item in body["items"]:
            if live.rng.random() < p:
                events.append({
                    "event_id": f"c-{unit}-{item['item_id']}", "experiment": EXP,
                    "variant": body["variant"], "unit_id": unit, "type": "click",
                    "item_id": item["item_id"], "position": item["position"],
                })  # fmt: skip
    if events:
        r = live.http.post("/v1/events", json={"events": events})
        assert r.status_code == 200, r.text


def sql_counts(live: Live) -> dict[str, dict[str, int]]:
    """Per variant: units with an exposure, exposures and clicks, straight from SQL."""
    q = sa.text(
        f"SELECT variant, "
        f"COUNT(DISTINCT CASE WHEN type = 'exposure' THEN unit_id END), "
        f"SUM(CASE WHEN type = 'exposure' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN type = 'click' THEN 1 ELSE 0 END) "
        f"FROM {live.prefix}events WHERE experiment = :e GROUP BY variant"
    )
    engine = sa.create_engine(live.store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(q, {"e": EXP}).all()
    finally:
        engine.dispose()
    return {str(v): {"units": int(n), "exposures": int(e), "clicks": int(c)} for v, n, e, c in rows}


def shown_counts(page: Any) -> dict[str, dict[str, int]]:
    """The counts table as the page shows it (thousands separators removed)."""
    out: dict[str, dict[str, int]] = {}
    for cell in page.locator("#counts td[data-field]").all():
        field_name = cell.get_attribute("data-field")
        if field_name in {"units", "exposures", "clicks"}:
            variant = cell.get_attribute("data-variant")
            out.setdefault(variant, {})[field_name] = int(cell.inner_text().replace(",", ""))
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Watched:
    page: Any
    errors: list[str]
    requests: list[str]


@pytest.fixture
def open_page(browser: Any, live: Live) -> Iterator[Callable[[str], Watched]]:
    """Open a page in a fresh context, recording console errors, page errors and requests."""
    contexts = []

    def opener(path: str) -> Watched:
        ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
        contexts.append(ctx)
        page = ctx.new_page()
        w = Watched(page, [], [])
        page.on("console", lambda m: w.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: w.errors.append(f"page error: {exc}"))
        page.on("request", lambda req: w.requests.append(req.url))
        page.goto(live.url + path)
        return w

    yield opener
    for ctx in contexts:
        ctx.close()


def wait_selector(w: Watched, selector: str, timeout_ms: int = 20_000) -> None:
    """Wait for `selector`; on a timeout, fail with the page's console errors."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        w.page.wait_for_selector(selector, timeout=timeout_ms)
    except PlaywrightTimeout:
        raise AssertionError(f"{selector} never appeared; console errors: {w.errors}") from None


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


# ---------------------------------------------------------------------------- HTTP only
def test_page_and_assets_are_served_with_the_ui_csp(live: Live) -> None:
    page = live.http.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP_UI
    assert "'unsafe-inline'" not in CSP_UI and "http" not in CSP_UI
    assert page.headers["x-frame-options"] == "DENY"
    # everything the page loads is its own: no external URL, no inline script or style
    html = page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<style" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert EXP not in html  # the public page carries no experiment data
    js = live.http.get("/ui/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "v1/admin" not in js.text  # the dashboard never calls admin routes
    css = live.http.get("/ui/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    redirect = live.http.get("/ui/", follow_redirects=False)
    assert redirect.status_code == 308
    assert httpx.URL(live.url + "/ui/").join(redirect.headers["location"]).path == "/ui"
    assert live.http.get("/ui/other.js").status_code == 404


def test_experiment_list_needs_the_read_token(live: Live) -> None:
    assert live.http.get("/v1/experiments").status_code == 401
    wrong = live.http.get("/v1/experiments", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    for headers in (READ, ADMIN):
        r = live.http.get("/v1/experiments", headers=headers)
        assert r.status_code == 200
        by_id = {s["id"]: s for s in r.json()}
        assert {EXP, "later"} <= set(by_id)
        assert by_id[EXP]["status"] == "running" and by_id["later"]["status"] == "draft"
    admin_list = live.http.get("/v1/admin/experiments", headers=READ).json()
    assert admin_list == live.http.get("/v1/experiments", headers=READ).json()


# ---------------------------------------------------------------------------- browser
def test_dashboard_shows_sql_counts_and_updates_live(
    live: Live, open_page: Callable[[str], Watched]
) -> None:
    send_traffic(live, range(0, 120))
    w = open_page(f"/ui#token={READ_TOKEN}")
    page = w.page
    wait_selector(w, "#counts")
    first = sql_counts(live)
    assert set(first) == {"control", "treatment"}
    assert sum(v["units"] for v in first.values()) == 120
    assert shown_counts(page) == first
    assert page.locator("#exp-title").inner_text() == EXP
    # the token left the address bar and is kept for the tab only
    assert READ_TOKEN not in page.url
    assert page.evaluate("sessionStorage.getItem('abrec.readToken')") == READ_TOKEN
    # the sequential chart has one point per tested look, and the decision is shown
    looks = int(page.locator("svg.chart").get_attribute("data-looks"))
    res = live.http.get(f"/v1/experiments/{EXP}/results", headers=READ).json()
    assert looks == len(res["comparisons"][0]["sequential_ctr"]["history"]) >= 1
    assert page.locator("#decision .verdict").count() == 1
    assert page.locator("#drift-none").inner_text() == "Drift: not computed for this experiment."

    send_traffic(live, range(120, 200))
    second = sql_counts(live)
    assert sum(v["units"] for v in second.values()) == 200
    wait_for(lambda: shown_counts(page) == second, 15, f"the page to show {second}")

    assert w.errors == []
    origin = live.url.rstrip("/")
    assert all(u.startswith(origin + "/") or u.startswith("data:") for u in w.requests)
    assert not [u for u in w.requests if "/v1/admin" in u]
    assert not [u for u in w.requests if READ_TOKEN in u]
    assert any(u.endswith(f"/v1/experiments/{EXP}/results") for u in w.requests)


def test_dashboard_asks_for_a_token_and_rejects_a_wrong_one(
    live: Live, open_page: Callable[[str], Watched]
) -> None:
    w = open_page("/ui")
    page = w.page
    page.wait_for_selector("#login", state="visible", timeout=10_000)
    assert "Read token needed" in page.locator("#login").inner_text()
    assert page.locator("#app").is_hidden()
    assert not [u for u in w.requests if "/v1/" in u]  # nothing is read without a token

    page.fill("#token-input", "not-the-token")
    page.click("#login-form button")
    page.wait_for_function(
        "document.getElementById('login-msg').textContent.includes('refused')", timeout=10_000
    )
    assert page.locator("#app").is_hidden()

    page.fill("#token-input", ADMIN_TOKEN)  # the admin token grants reads too
    page.click("#login-form button")
    wait_selector(w, "#counts")
    assert shown_counts(page) == sql_counts(live)
    # the only errors are the browser's own report of the refused request
    assert all("401" in e for e in w.errors)


def test_dashboard_renders_drift_when_the_results_carry_it(
    live: Live, open_page: Callable[[str], Watched], browser: Any
) -> None:
    """Results with a `drift` section (the monitoring part of issue 13) show a drift table
    and an alarm badge; the section is added to the real response in flight."""
    send_traffic(live, range(200, 230))
    drift = [
        {"check": "score", "model": "cooc", "psi": 0.31, "ks_statistic": 0.2,
         "ks_pvalue": 1e-6, "alarm": True, "n_reference": 5000, "n_serving": 800},
        {"check": "popularity", "model": None, "psi": 0.02, "ks_statistic": 0.03,
         "ks_pvalue": 0.6, "alarm": False, "n_reference": 5000, "n_serving": 800},
    ]  # fmt: skip

    def add_drift(route: Any) -> None:
        resp = route.fetch()
        body = resp.json()
        body["drift"] = drift
        route.fulfill(response=resp, body=json.dumps(body))

    ctx = browser.new_context()
    try:
        ctx.route(re.compile(r".*/v1/experiments/[^/]+/results$"), add_drift)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{live.url}/ui#token={READ_TOKEN}")
        page.wait_for_selector("table.drift", timeout=20_000)
        rows = page.locator("table.drift tbody tr")
        assert rows.count() == 2
        assert "alarm" in rows.nth(0).inner_text() and "0.31" in rows.nth(0).inner_text()
        badge = page.locator(f"button[data-exp='{EXP}'] .badge.bad", has_text="drift")
        assert badge.count() == 1
        assert errors == []
    finally:
        ctx.close()


def _adaptive_traffic(live: Live, exp: str, units: int) -> None:
    """Recommendations for `units` units of `exp`, clicks on some items (more often on
    items ranked by `popularity`), acknowledged by `/v1/events`."""
    events: list[dict[str, Any]] = []
    for u in range(units):
        unit = f"{exp}-u{u}"
        r = live.http.post("/v1/recommend", json={"unit_id": unit, "experiment": exp, "k": 6})
        assert r.status_code == 200, r.text
        body = r.json()
        for item in body["items"]:
            p = 0.35 if item.get("source") == "b" or body["variant"] == "b" else 0.15
            if live.rng.random() < p:
                events.append({
                    "event_id": f"c-{unit}-{item['item_id']}", "experiment": exp,
                    "variant": body["variant"], "unit_id": unit, "type": "click",
                    "item_id": item["item_id"], "position": item["position"],
                })  # fmt: skip
    r = live.http.post("/v1/events", json={"events": events})
    assert r.status_code == 200, r.text


def test_dashboard_interleaving_and_bandit_views(
    live: Live, open_page: Callable[[str], Watched]
) -> None:
    arms = [{"name": "a", "model": "cooc"}, {"name": "b", "model": "popularity"}]
    for spec in ({"id": "il-1", "type": "interleaving"}, {"id": "bandit-1", "type": "bandit"}):
        r = live.http.post("/v1/admin/experiments", json={**spec, "variants": arms}, headers=ADMIN)
        assert r.status_code == 201, r.text
        start = live.http.post(f"/v1/admin/experiments/{spec['id']}/start", headers=ADMIN)
        assert start.status_code == 200
        _adaptive_traffic(live, spec["id"], 150)

    w = open_page(f"/ui#token={READ_TOKEN}&exp=il-1")
    wait_selector(w, "#interleaving")
    il = live.http.get("/v1/experiments/il-1/results", headers=READ).json()["interleaving"]
    pair = il["pairs"][0]
    assert pair["wins"] + pair["losses"] > 0
    row = w.page.locator("#interleaving tbody tr").first
    for key in ("wins", "losses", "ties"):
        assert int(row.locator(f"td[data-field={key}]").inner_text()) == pair[key]

    w.page.click("button[data-exp='bandit-1']")
    wait_selector(w, "#bandit")
    bandit = live.http.get("/v1/experiments/bandit-1/results", headers=READ).json()["bandit"]
    shown = [
        float(c.inner_text().rstrip("%")) / 100
        for c in w.page.locator("#bandit td[data-field=weight]").all()
    ]
    assert shown == pytest.approx(bandit["weights"], abs=0.0005)  # shown with one decimal %
    heading = w.page.locator("#bandit h3").inner_text()
    assert ("burn-in" in heading) == bandit["in_burn_in"]
    ips = [c.inner_text() for c in w.page.locator("#bandit td[data-field=ips]").all()]
    for text, value in zip(ips, bandit["values"], strict=True):
        assert float(text.split("%")[0]) == pytest.approx(100 * value["ips"]["estimate"], abs=0.005)
    assert w.errors == []
