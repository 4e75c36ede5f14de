"""Take the dashboard screenshot (docs/img/dashboard.png) from a short simulated run.

Not a benchmark: a reproducible script that fits `ease` and `popularity` on seeded synthetic
taste-cluster data, serves them with `ServiceThread` (SQLite store in a temp folder), runs
simulated users through an A/B test (still running), an A/A test (stopped) and leaves a
draft, then opens `/ui` in Debian's Chromium with the read token and saves a full-page
screenshot.

    PYTHONPATH=src python benchmarks/dashboard_screenshot.py [--out docs/img/dashboard.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from pydantic import SecretStr

from abrec.data.types import Interactions, ItemCatalog
from abrec.models.bundle import ModelBundle
from abrec.models.registry import build_model
from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.simulate.online import check
from abrec.simulate.population import SimUser
from abrec.simulate.runner import SimulationConfig, Simulator
from abrec.simulate.scenario import experiment_spec

N_USERS, N_ITEMS, N_CLUSTERS = 3000, 240, 8
ADMIN, READ = "shot-admin", "shot-read"


def synthetic_world(seed: int = 7) -> tuple[Interactions, ItemCatalog, list[SimUser]]:
    """Users with one favourite taste cluster: training history mostly from it, held-out
    ratings high inside it and low outside; item popularity is Zipf-like."""
    rng = np.random.default_rng(seed)
    cluster = np.arange(N_ITEMS) % N_CLUSTERS
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.9
    rng.shuffle(pop)
    fav = rng.integers(0, N_CLUSTERS, size=N_USERS)
    rows, cols, users = [], [], []
    for u in range(N_USERS):
        w = pop * np.where(cluster == fav[u], 6.0, 1.0)
        seen = rng.choice(N_ITEMS, size=12, replace=False, p=w / w.sum())
        rows += [u] * len(seen)
        cols += seen.tolist()
        rated = rng.choice(np.setdiff1d(np.arange(N_ITEMS), seen), size=40, replace=False)
        own = cluster[rated] == fav[u]
        ratings = np.where(
            own, rng.uniform(3.8, 5.0, rated.size), rng.uniform(1.0, 3.2, rated.size)
        )
        users.append(
            SimUser(
                unit_id=f"u{u}",
                test_ratings={f"i{j}": float(r) for j, r in zip(rated, ratings, strict=True)},
                n_train=len(seen),
                covariate=None,
            )
        )
    inter = Interactions(
        user_idx=np.asarray(rows),
        item_idx=np.asarray(cols),
        user_ids=np.array([f"u{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"i{j}" for j in range(N_ITEMS)], dtype=object),
    )
    catalog = ItemCatalog(
        item_ids=inter.item_ids, text=np.array([f"item {j}" for j in range(N_ITEMS)])
    )
    return inter, catalog, users


def simulate(base_url: str, users: list[SimUser], exp: str, seed: int) -> None:
    cfg = SimulationConfig(experiment=exp, sessions_mean=2.0, max_sessions=4, k=10, seed=seed)
    Simulator(base_url, users, cfg).run()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/img/dashboard.png"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    inter, catalog, users = synthetic_world()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = {
            "popularity": build_model("popularity").fit(inter, catalog),
            "ease": build_model("ease", lambda_=50.0).fit(inter, catalog),
        }
        ModelBundle(models=models, user_ids=inter.user_ids, item_ids=inter.item_ids).save(
            tmp / "bundle"
        )
        config = ServeConfig(
            store_url=f"sqlite:///{tmp / 'events.db'}",
            bundle=tmp / "bundle",
            fallback_model="popularity",
            admin_token=SecretStr(ADMIN),
            read_token=SecretStr(READ),
            monitor_interval_s=1.0,  # so the shot shows the health and drift checks
            drift_interval_s=1.0,
        )
        t0 = time.monotonic()
        with (
            ServiceThread(config) as svc,
            httpx.Client(
                base_url=svc.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
            ) as http,
        ):
            specs = [
                experiment_spec("ease-vs-popularity", "popularity", "ease", planned_units=4000),
                experiment_spec("popularity-aa", "popularity", "popularity", aa=True),
                experiment_spec("ease-rerank-next", "ease", "popularity"),
            ]
            specs[0]["description"] = "EASE against the popularity baseline, 50/50 by user"
            specs[0]["guardrails"] = ["exposures_per_unit", "ctr"]
            for spec in specs:
                check(http.post("/v1/admin/experiments", json=spec), f"create {spec['id']}")
            for exp, group, seed in (
                ("popularity-aa", users[:800], 1),
                ("ease-vs-popularity", users[800:], 2),
            ):
                check(http.post(f"/v1/admin/experiments/{exp}/start"), f"start {exp}")
                simulate(svc.url, group, exp, seed)
            check(http.post("/v1/admin/experiments/popularity-aa/stop"), "stop the A/A test")
            print(f"simulated traffic in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # wait for the monitor's drift checks
                got = http.get("/v1/experiments/ease-vs-popularity/results").json()
                if got.get("drift"):
                    break
                time.sleep(1)
            else:
                print("the monitor computed no drift checks within 120 s", file=sys.stderr)
                return 1
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(f"{svc.url}/ui#token={READ}&exp=ease-vs-popularity")
                page.wait_for_selector("svg.chart")
                page.wait_for_timeout(500)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
            if errors:
                print(f"console errors: {errors}", file=sys.stderr)
                return 1
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
