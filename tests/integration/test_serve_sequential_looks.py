"""The service's sequential CTR result against a reference built here from the raw traffic.

Units are assigned (and exposed) through `/v1/recommend` one after another, so their entry
order is the order of the calls; clicks go through `/v1/events`. The reference orders the
units by entry, places a look after every `sequential_look_every` units plus one at the end,
builds each arm's clicks/exposures sums over the units entered by each look, and runs
`SequentialMonitor` (the public stable API) over the looks, skipping looks where the test is
undefined. The service must report the same running p-value, interval and look counts.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_serve_support import build_bundle, experiment_toml, start_service, write_config

import abrec.stats as st
from abrec.serve.config import ServeConfig

LOOK_EVERY = 7
PLANNED = 200
N_UNITS = 45


def _reference(variant: list[str], exposures: np.ndarray, clicks: np.ndarray) -> dict:
    arms = np.array(variant)
    n = len(arms)
    ends = [*range(LOOK_EVERY, n, LOOK_EVERY), n]
    mon = st.SequentialMonitor(rho=st.optimal_rho(PLANNED))

    def stats(arm: str, end: int) -> st.RatioStats:
        pick = arms[:end] == arm
        c, e = clicks[:end][pick].astype(float), exposures[:end][pick].astype(float)
        return st.RatioStats(int(pick.sum()), c.sum(), c @ c, e.sum(), e @ e, c @ e)

    for end in ends:
        try:
            mon.update(stats("control", end), stats("treatment", end))
        except st.StatsInputError:  # < 2 units in an arm or no variance yet: no evidence
            continue
    assert mon.last is not None
    return {"looks": len(ends), "tested": mon.looks, "result": mon.last}


def test_sequential_ctr_matches_looks_rebuilt_from_raw_traffic(tmp_path: Path) -> None:
    bundle, _ = build_bundle(tmp_path / "bundle")
    exp = experiment_toml(
        "seq1", [("control", 0.5, "cooc"), ("treatment", 0.5, "cooc_b")], status="running"
    ).replace(
        "variants = [",
        f"planned_units = {PLANNED}\nsequential_look_every = {LOOK_EVERY}\nvariants = [",
        1,
    )
    cfg = ServeConfig.from_toml(
        write_config(tmp_path, f"sqlite:///{tmp_path / 'e.db'}", bundle, exp)
    )
    thread = start_service(cfg, "seq-token")
    rng = np.random.default_rng(21)
    variant, exposures, clicks = [], [], []
    try:
        with httpx.Client(base_url=thread.url, timeout=30) as client:
            for u in range(N_UNITS):
                unit = f"visitor-{u:03d}"  # unknown to the models: popularity-style scores
                served: list[tuple[str, str]] = []  # (request_id, item_id) shown to the unit
                for _ in range(int(rng.integers(1, 3))):  # one or two requests per unit
                    k = int(rng.integers(2, 7))
                    r = client.post(
                        "/v1/recommend", json={"unit_id": unit, "experiment": "seq1", "k": k}
                    )
                    assert r.status_code == 200, r.text
                    body = r.json()
                    served += [(body["request_id"], it["item_id"]) for it in body["items"]]
                shown = len(served)
                p_click = 0.5 if body["variant"] == "treatment" else 0.2
                n_click = int(rng.binomial(shown, p_click))
                events = [
                    {
                        "event_id": f"{unit}:click:{i}",
                        "experiment": "seq1",
                        "variant": body["variant"],
                        "unit_id": unit,
                        "type": "click",
                        "request_id": served[i][0],
                        "item_id": served[i][1],
                    }
                    for i in rng.choice(shown, size=n_click, replace=False)
                ]
                if events:
                    assert client.post("/v1/events", json={"events": events}).status_code == 200
                variant.append(body["variant"])
                exposures.append(shown)
                clicks.append(n_click)
            res = client.get(
                "/v1/experiments/seq1/results", headers={"Authorization": "Bearer seq-token"}
            )
    finally:
        thread.stop()
    assert res.status_code == 200, res.text
    (comp,) = res.json()["comparisons"]
    got = comp["sequential_ctr"]
    ref = _reference(variant, np.array(exposures), np.array(clicks))
    assert got["looks"] == ref["looks"] == math.ceil(N_UNITS / LOOK_EVERY)
    assert got["looks_tested"] == ref["tested"]
    want = ref["result"]
    assert got["p_value"] == pytest.approx(want.p_value, rel=1e-9)
    assert got["ci"]["low"] == pytest.approx(want.ci.low, rel=1e-9)
    assert got["ci"]["high"] == pytest.approx(want.ci.high, rel=1e-9)
    assert got["estimate"] == pytest.approx(want.estimate, rel=1e-9)
