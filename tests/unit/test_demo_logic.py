"""Demo logic: running confidence sequence, decision rules, flattening real analysis results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from abrec.demo import Monitor, decide, online_section
from abrec.experiment.analysis import analyze
from abrec.experiment.spec import ExperimentSpec
from abrec.simulate import experiment_spec
from abrec.store import Event, EventStore


def _payload(
    est: float, low: float, high: float, p: float, units: int = 200, srm: bool = False
) -> dict[str, Any]:
    return {
        "variants": [
            {"name": "control", "units": units // 2, "exposures": 10 * units, "clicks": units},
            {
                "name": "treatment",
                "units": units - units // 2,
                "exposures": 10 * units,
                "clicks": units,
            },
        ],
        "srm": {"chi2": 30.0 if srm else 0.1, "p_value": 1e-8 if srm else 0.7, "mismatch": srm},
        "comparisons": [
            {
                "treatment": "treatment",
                "sequential_ctr": {
                    "estimate": est,
                    "ci": {"estimate": est, "low": low, "high": high},
                    "p_value": p,
                    "decision": "reject" if p < 0.05 else "continue",
                },
                "guardrails": [{"metric": "exposures_per_unit", "passed": True}],
            }
        ],
    }


def test_monitor_intersects_intervals_and_keeps_min_p() -> None:
    m = Monitor(alpha=0.05)
    assert m.update({}, 0.1) is None  # nothing to analyse yet
    m.update(_payload(0.01, -0.02, 0.05, 0.6), 1.0)
    m.update(_payload(0.02, -0.01, 0.07, 0.4), 2.0)
    m.update(_payload(0.0, -0.03, 0.03, 0.9), 3.0)
    assert (m.low, m.high) == (-0.01, 0.03)
    assert m.p_value == 0.4 and not m.rejected
    assert [lk.p_value for lk in m.looks] == [0.6, 0.4, 0.4]
    assert m.looks[-1].units == 200 and m.looks[-1].clicks == 400
    m.update(_payload(0.03, 0.005, 0.06, 0.01), 4.0)
    assert m.rejected and m.looks[-1].decision == "reject"
    assert m.low == 0.005


def test_monitor_uses_each_polls_last_look() -> None:
    m = Monitor(alpha=0.05)
    payload = _payload(0.02, 0.001, 0.05, 0.01)  # the server's running (intersected) value
    seq = payload["comparisons"][0]["sequential_ctr"]
    seq["last_look"] = {"estimate": 0.01, "ci": {"low": -0.02, "high": 0.04}, "p_value": 0.3}
    look = m.update(payload, 1.0)
    assert look is not None and look.estimate == 0.01
    assert (m.low, m.high, m.p_value) == (-0.02, 0.04, 0.3) and not m.rejected


def test_decide_rules() -> None:
    m = Monitor(alpha=0.05)
    m.update(_payload(0.03, 0.005, 0.06, 0.01), 1.0)
    d = decide(_payload(0.03, 0.005, 0.06, 0.01), m)
    assert d["winner"] == "treatment" and "wins" in d["verdict"]
    # a failed guardrail blocks shipping
    bad = _payload(0.03, 0.005, 0.06, 0.01)
    bad["comparisons"][0]["guardrails"][0]["passed"] = False
    assert decide(bad, m)["winner"] is None
    # SRM blocks any decision
    assert decide(_payload(0.03, 0.005, 0.06, 0.01, srm=True), m)["winner"] is None
    # control better
    m2 = Monitor(alpha=0.05)
    m2.update(_payload(-0.03, -0.06, -0.005, 0.01), 1.0)
    assert decide({}, m2)["winner"] == "control"
    # nothing significant: no winner, A/A label
    m3 = Monitor(alpha=0.05)
    m3.update(_payload(0.0, -0.02, 0.02, 0.8), 1.0)
    assert decide({}, Monitor(alpha=0.05))["verdict"] == "no winner: not enough data"
    d3 = decide({}, m3, aa=True)
    assert d3["winner"] is None and d3["verdict"].startswith("A/A test: no winner")


def _events(seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    out: list[Event] = []
    for u in range(120):
        variant = "control" if u % 2 else "treatment"
        n_exp = int(rng.integers(5, 30))
        p = 0.08 if variant == "control" else 0.12
        clicks = rng.random(n_exp) < p
        x = float(rng.poisson(3))
        out.append(
            Event(
                event_id=f"c{u}",
                experiment="e",
                variant=variant,
                unit_id=str(u),
                type="covariate",
                value=x,
            )
        )
        for j in range(n_exp):
            out.append(
                Event(
                    event_id=f"x{u}:{j}",
                    experiment="e",
                    variant=variant,
                    unit_id=str(u),
                    type="exposure",
                    item_id=str(j),
                    position=j % 10,
                )
            )
            if clicks[j]:
                out.append(
                    Event(
                        event_id=f"k{u}:{j}",
                        experiment="e",
                        variant=variant,
                        unit_id=str(u),
                        type="click",
                        item_id=str(j),
                        position=j % 10,
                    )
                )
    return out


def test_online_section_flattens_real_analysis(tmp_path: Path) -> None:
    store = EventStore.from_url(f"sqlite:///{tmp_path / 'ev.db'}")
    store.create_schema()
    events = _events()
    store.append(events)
    spec = ExperimentSpec.model_validate(
        {**experiment_spec("e", "ease", "hybrid"), "status": "running"}
    )
    analysis = analyze(store, spec).to_dict()
    store.dispose()
    on = online_section(analysis)
    by_name = {v["name"]: v for v in on["variants"]}
    for name in ("control", "treatment"):
        evs = [e for e in events if e.variant == name]
        assert by_name[name]["exposures"] == sum(e.type == "exposure" for e in evs)
        assert by_name[name]["clicks"] == sum(e.type == "click" for e in evs)
        assert by_name[name]["units"] == 60
    ctr = next(e for e in on["effects"] if e["metric"] == "ctr")
    clicks = {n: by_name[n]["clicks"] for n in by_name}
    exps = {n: by_name[n]["exposures"] for n in by_name}
    expected = clicks["treatment"] / exps["treatment"] - clicks["control"] / exps["control"]
    assert ctr["estimate"] == pytest.approx(expected)
    assert ctr["low"] < ctr["estimate"] < ctr["high"]
    assert ctr["relative"] == pytest.approx(
        (clicks["treatment"] / exps["treatment"]) / (clicks["control"] / exps["control"]) - 1
    )
    assert ctr["p_adjusted"] >= ctr["p_value"]
    cuped = [e for e in on["effects"] if e["variance_reduction"] is not None]
    assert len(cuped) == 1 and cuped[0]["metric"] == "clicks_per_unit"
    seq = on["sequential"][0]
    assert seq["low"] <= seq["estimate"] <= seq["high"]
    # the always-valid interval is wider than the fixed-horizon one
    assert seq["high"] - seq["low"] > ctr["high"] - ctr["low"]
    assert on["srm"] is not None and not on["srm"]["mismatch"]
    assert {g["metric"] for g in on["guardrails"]} >= {"exposures_per_unit"}
    assert all(math.isfinite(e["p_value"]) for e in on["effects"])


def test_planned_units_tunes_the_sequential_test(tmp_path: Path) -> None:
    from abrec.stats import RatioStats, sequential_ratio_test

    store = EventStore.from_url(f"sqlite:///{tmp_path / 'ev.db'}")
    store.create_schema()
    store.append(_events(1))
    base = {**experiment_spec("e", "ease", "hybrid"), "status": "running"}
    default = ExperimentSpec.model_validate(base)
    tuned = ExperimentSpec.model_validate({**base, "planned_units": 120})
    seq_default = analyze(store, default).to_dict()["comparisons"][0]["sequential_ctr"]
    seq_tuned = analyze(store, tuned).to_dict()["comparisons"][0]["sequential_ctr"]
    summary = store.variant_summary("e")
    store.dispose()

    def rs(v: Any) -> RatioStats:
        return RatioStats(
            v.n_units, v.sum_clicks, v.sum_sq_clicks, v.sum_exposures, v.sum_sq_exposures,
            v.sum_clicks_exposures,
        )  # fmt: skip

    ref = sequential_ratio_test(rs(summary["control"]), rs(summary["treatment"]), target_n=120)
    assert seq_tuned["ci"]["low"] == pytest.approx(ref.ci.low)
    assert seq_tuned["p_value"] == pytest.approx(ref.p_value)
    # tuned to the sample actually planned, the confidence sequence is tighter there
    width = seq_tuned["ci"]["high"] - seq_tuned["ci"]["low"]
    assert width < seq_default["ci"]["high"] - seq_default["ci"]["low"]


def test_parse_click_model() -> None:
    from abrec.demo import parse_click_model
    from abrec.errors import ConfigError

    cm = parse_click_model(["eta=1.5", "noise=0"])
    assert cm.eta == 1.5 and cm.noise == 0.0 and cm.a_max == parse_click_model([]).a_max
    for bad in (["eta"], ["eta=x"], ["nope=1"], ["eta=-1"]):
        with pytest.raises(ConfigError):
            parse_click_model(bad)
