"""Demo logic: it displays the server's sequential result, decides on it, flattens real results."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from abrec.demo import DemoOptions, agreement, build_report, decide, look_at
from abrec.experiment.analysis import ExperimentResults, analyze
from abrec.experiment.spec import ExperimentSpec
from abrec.report import DemoReport, LeaderboardRow, OfflineComparison, OfflineSection, render_html
from abrec.simulate import experiment_spec
from abrec.simulate.runner import SimulationProgress
from abrec.stats import EffectResult, Interval
from abrec.store import Event, EventStore


def _real(tmp_path: Path, seed: int = 0) -> tuple[ExperimentResults, list[Event]]:
    store = EventStore.from_url(f"sqlite:///{tmp_path / f'ev{seed}.db'}")
    store.create_schema()
    events = _events(seed)
    store.append(events)
    spec = ExperimentSpec.model_validate(
        {**experiment_spec("e", "ease", "hybrid"), "status": "running"}
    )
    res = analyze(store, spec)
    store.dispose()
    # what the demo gets is the endpoint's JSON parsed back
    return ExperimentResults.parse(res.to_json()), events


def _with_seq(
    res: ExperimentResults,
    low: float,
    high: float,
    p: float,
    *,
    guard_ok: bool = True,
    srm: bool = False,
) -> ExperimentResults:
    comp = res.comparisons[0]
    assert comp.sequential_ctr is not None
    seq = dataclasses.replace(
        comp.sequential_ctr,
        ci=Interval((low + high) / 2, low, high),
        p_value=p,
        decision="reject" if p <= 0.05 else "continue",
    )
    guards = tuple(dataclasses.replace(g, passed=guard_ok) for g in comp.guardrails)
    comp = dataclasses.replace(comp, sequential_ctr=seq, guardrails=guards)
    out = dataclasses.replace(res, comparisons=(comp,))
    if srm:
        assert res.srm is not None
        out = dataclasses.replace(
            out, srm=dataclasses.replace(res.srm, mismatch=True, p_value=1e-8)
        )
    return out


def test_look_displays_the_servers_running_result(tmp_path: Path) -> None:
    res, events = _real(tmp_path)
    assert look_at(None, 0.1) is None
    look = look_at(res, 1.5)
    assert look is not None
    seq = res.comparisons[0].sequential_ctr
    assert seq is not None
    # the server's running values, not a re-computation
    assert (look.estimate, look.low, look.high, look.p_value, look.decision) == (
        seq.estimate, seq.ci.low, seq.ci.high, seq.p_value, seq.decision
    )  # fmt: skip
    assert look.units == 120
    assert look.exposures == sum(e.type == "exposure" for e in events)
    assert look.clicks == sum(e.type == "click" for e in events)
    no_seq = dataclasses.replace(
        res, comparisons=(dataclasses.replace(res.comparisons[0], sequential_ctr=None),)
    )
    assert look_at(no_seq, 1.0) is None


def test_decide_rules(tmp_path: Path) -> None:
    res, _ = _real(tmp_path)
    d = decide(_with_seq(res, 0.005, 0.06, 0.01))
    assert d.winner == "treatment" and "wins" in d.verdict
    assert "[+0.0050, +0.0600]" in d.text and "p = 0.01" in d.text
    # a failed guardrail blocks shipping
    assert decide(_with_seq(res, 0.005, 0.06, 0.01, guard_ok=False)).winner is None
    # SRM blocks any decision
    srm = decide(_with_seq(res, 0.005, 0.06, 0.01, srm=True))
    assert srm.winner is None and "sample-ratio mismatch" in srm.verdict
    # control better
    assert decide(_with_seq(res, -0.06, -0.005, 0.01)).winner == "control"
    # the decision follows the server's decision (p <= alpha), nothing else
    assert decide(_with_seq(res, -0.02, 0.02, 0.8)).winner is None
    assert decide(None).verdict == "no winner: not enough data"
    d3 = decide(_with_seq(res, -0.02, 0.02, 0.8), aa=True)
    assert d3.winner is None and d3.verdict.startswith("A/A test: no winner")


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


def _offline() -> OfflineSection:
    return OfflineSection(
        primary_metric="ndcg@10",
        baseline="ease",
        leaderboard=(
            LeaderboardRow("hybrid", {"ndcg@10": Interval(0.11, 0.10, 0.12)}),
            LeaderboardRow("ease", {"ndcg@10": Interval(0.10, 0.09, 0.11)}),
        ),
        comparisons=(
            OfflineComparison("hybrid", "ease", "ndcg@10", Interval(0.01, 0.003, 0.016), 0.004),
        ),
    )


def test_typed_report_from_real_results(tmp_path: Path) -> None:
    res, events = _real(tmp_path)
    looks = [look for t in (1.0, 2.0) if (look := look_at(res, t)) is not None]
    progress = SimulationProgress(200, 150, 120, 0, 0, 0, 0, 0, 0, 3.0, True)
    spec = experiment_spec("e", "ease", "hybrid")
    report = build_report(
        _offline(), res, looks, decide(res), spec=spec, progress=progress,
        opts=DemoOptions(seed=3), store_url="sqlite:///x.db", stopped_by="sequential test decided",
        timings={"offline_s": 1.25, "online_s": 2.5},
    )  # fmt: skip
    assert report.online is res and report.timeline == tuple(looks)
    assert report.title == "abrec demo: ease (control) vs hybrid (treatment)"
    assert report.run is not None and report.run.sessions_done == 150 and report.run.seed == 3
    assert report.spec is not None and report.spec.id == "e"
    # counts and CTR in the typed results agree with the events, counted here
    for name in ("control", "treatment"):
        v = res.variant(name)
        assert v is not None and v.n == 60
        evs = [e for e in events if e.variant == name]
        exposures = sum(e.type == "exposure" for e in evs)
        clicks = sum(e.type == "click" for e in evs)
        assert (v.totals["exposures"], v.totals["clicks"]) == (exposures, clicks)
        assert v.means["ctr"] == pytest.approx(clicks / exposures)
    # agreement: the offline difference against the control model, the online CTR lift
    ctr = {
        n: sum(e.type == "click" for e in events if e.variant == n)
        / sum(e.type == "exposure" for e in events if e.variant == n)
        for n in ("control", "treatment")
    }
    (agree,) = report.agreement
    assert agree.offline == Interval(0.01, 0.003, 0.016) and agree.offline_metric == "ndcg@10"
    assert agree.online.estimate == pytest.approx(ctr["treatment"] / ctr["control"] - 1)
    assert agree.online.low < agree.online.estimate < agree.online.high
    # A/A: the offline difference is exactly 0; another baseline: unknown
    (aa,) = agreement(_offline(), res, control_model="ease", treatment_model="ease")
    assert aa.offline == Interval(0.0, 0.0, 0.0)
    other = dataclasses.replace(_offline(), baseline="popularity")
    assert agreement(other, res, control_model="ease", treatment_model="hybrid")[0].offline is None
    assert agreement(_offline(), None, control_model="ease", treatment_model="hybrid") == ()
    # the report round-trips through results.json and shows the counts
    assert DemoReport.parse(report.to_json()) == report
    page = render_html(report)
    for name in ("control", "treatment"):
        v = res.variant(name)
        assert v is not None
        assert f">{int(v.totals['exposures'])}<" in page and f">{int(v.totals['clicks'])}<" in page
    comp = res.comparisons[0]
    fixed = next(t.result for t in comp.tests if t.metric == "ctr")
    assert isinstance(fixed, EffectResult)
    seq = comp.sequential_ctr
    assert seq is not None
    # the always-valid interval is wider than the fixed-horizon one
    assert seq.ci.high - seq.ci.low > fixed.absolute.high - fixed.absolute.low
    assert comp.cuped_clicks_per_unit is not None
    assert {g.metric for g in comp.guardrails} >= {"exposures_per_unit"}
    assert all(math.isfinite(t.result.p_value) for t in comp.tests)  # type: ignore[union-attr]


def test_planned_units_tunes_the_sequential_test(tmp_path: Path) -> None:
    from abrec.stats import RatioStats, sequential_ratio_test

    store = EventStore.from_url(f"sqlite:///{tmp_path / 'ev.db'}")
    store.create_schema()
    events = _events(1)
    store.append(events)
    base = {**experiment_spec("e", "ease", "hybrid"), "status": "running"}
    default = ExperimentSpec.model_validate(base)
    tuned = ExperimentSpec.model_validate({**base, "planned_units": 120})
    seq_default = analyze(store, default).to_dict()["comparisons"][0]["sequential_ctr"]
    seq_tuned = analyze(store, tuned).to_dict()["comparisons"][0]["sequential_ctr"]
    store.dispose()

    def rs(variant: str) -> RatioStats:
        # per-unit clicks and exposures counted from the events, independently of the store
        units: dict[str, list[float]] = {}
        for e in events:
            if e.variant == variant and e.type in ("exposure", "click"):
                units.setdefault(e.unit_id, [0.0, 0.0])[e.type == "exposure"] += 1
        c, x = np.array(list(units.values())).T
        return RatioStats.from_arrays(c, x)

    ref = sequential_ratio_test(rs("control"), rs("treatment"), target_n=120)
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


def test_an_early_stop_is_decided_and_shown_at_the_stopping_poll(tmp_path: Path) -> None:
    """The poll that stopped the run carries the decision; the later final result is shown
    as 'after the stop' and does not overturn it."""
    from io import StringIO

    from rich.console import Console

    from abrec.demo import print_decision, stopping_look

    res, _ = _real(tmp_path)
    at_stop = _with_seq(res, 0.001, 0.02, 0.01)  # the server said "reject" at this poll
    after = _with_seq(res, -0.002, 0.03, 0.2)  # in-flight sessions moved the final look
    first = look_at(_with_seq(res, -0.01, 0.03, 0.4), 1.0)
    stop = look_at(at_stop, 2.0)
    final = look_at(after, 3.0)
    assert first is not None and stop is not None and final is not None
    looks = [first, dataclasses.replace(stop, decisive=True), final]
    progress = SimulationProgress(200, 150, 120, 0, 0, 0, 0, 0, 0, 3.0, True)
    report = build_report(
        _offline(), after, looks, decide(at_stop), spec=experiment_spec("e", "ease", "hybrid"),
        progress=progress, opts=DemoOptions(), store_url="sqlite:///x.db",
        stopped_by="sequential test decided", timings={},
    )  # fmt: skip
    assert stopping_look(report) == looks[1]
    assert report.decision.winner == "treatment"
    assert stopping_look(DemoReport.parse(report.to_json())) == looks[1]  # survives the JSON
    out = StringIO()
    print_decision(Console(file=out, width=200), report)
    text = out.getvalue()
    assert "Sequential at the stop (120 units" in text and "[+0.0010, +0.0200], p = 0.01" in text
    assert "Sequential after the stop" in text and "[-0.0020, +0.0300], p = 0.2" in text
    ran_out = dataclasses.replace(report, timeline=(first, final))
    assert stopping_look(ran_out) is None


def _served_cfg(tmp_path: Path) -> object:
    """A generic-data demo config with a fine-tuned re-ranker and a CF re-ranker."""
    import pandas as pd

    from abrec.offline.config import parse_config

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", int(i), t, 5.0) for u in range(30) for t, i in enumerate(rng.choice(25, 8))]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    items = pd.DataFrame({"item_id": np.arange(25), "title": [f"Film {i}" for i in range(25)]})
    inter.to_csv(tmp_path / "i.csv", index=False)
    items.to_csv(tmp_path / "m.csv", index=False)
    ft = {"epochs": 1, "batch_size": 4}
    return parse_config(
        {
            "dataset": {
                "kind": "generic",
                "interactions": str(tmp_path / "i.csv"),
                "items": str(tmp_path / "m.csv"),
            },
            "protocol": {"name": "temporal"},
            "models": [
                {"name": "popularity", "kind": "popularity"},
                {"name": "ease", "kind": "ease"},
                {"name": "ltr_cf", "kind": "ltr_cf"},
                {"name": "ltr_ft", "kind": "ltr", "params": {"seed": 3, "finetune": ft}},
            ],
        }
    )


def test_the_demo_fits_only_the_served_models_and_falls_back_to_frozen_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served models only (control first, baseline = control). A served model whose tuned
    encoder is not cached runs on frozen vectors under another name, and a note says so;
    once the encoder is in the cache it is used as is."""
    from abrec.demo import served_config, without_missing_finetune
    from abrec.models.registry import config_class
    from abrec.models.tuning import finetune_config
    from abrec.offline.run import load_data, make_split
    from abrec.train.tuned import DONE, training_key

    monkeypatch.setenv("ABREC_CACHE", str(tmp_path / "cache"))
    cfg = _served_cfg(tmp_path)
    opts = DemoOptions(control_model="ltr_cf", treatment_model="ltr_ft")
    served = served_config(cfg, opts)  # type: ignore[arg-type]
    assert [m.name for m in served.models] == ["ltr_cf", "ltr_ft", "popularity"]  # + fallback
    assert served.evaluation.baseline == "ltr_cf" and served.evaluation.champion == "ltr_ft"
    frozen_cfg, frozen_opts, notes = without_missing_finetune(served, opts)
    assert [m.name for m in frozen_cfg.models] == ["ltr_cf", "ltr_ft_frozen", "popularity"]
    assert "finetune" not in frozen_cfg.models[1].params
    assert frozen_opts.treatment_model == "ltr_ft_frozen" and frozen_opts.control_model == "ltr_cf"
    assert frozen_cfg.evaluation.champion == "ltr_ft_frozen"
    assert len(notes) == 1 and "not cached" in notes[0] and "--finetune" in notes[0]
    # --finetune keeps the tuned model (fit will train it)
    kept, _, notes = without_missing_finetune(served, dataclasses.replace(opts, finetune=True))
    assert [m.name for m in kept.models][:2] == ["ltr_cf", "ltr_ft"] and "now" in notes[0]
    # a finished cache entry for exactly this training set and setting is found
    inter, items = load_data(served.dataset)
    split = make_split(served, inter)
    mcfg = config_class("ltr").model_validate({**served.models[1].params, "validation": "temporal"})
    tcfg = finetune_config(mcfg, "ltr")
    assert tcfg is not None
    folder = (
        tmp_path / "cache" / "finetune" / training_key(split.train, items, tcfg, "temporal")[:24]
    )
    folder.mkdir(parents=True)
    (folder / DONE).write_text("{}")
    cached, _, notes = without_missing_finetune(served, opts)
    assert [m.name for m in cached.models][:2] == ["ltr_cf", "ltr_ft"] and "cache" in notes[0]
    with pytest.raises(Exception, match="not in the offline config"):
        served_config(cfg, DemoOptions(control_model="nope"))  # type: ignore[arg-type]


def test_the_demo_recipe_is_the_one_the_examples_document() -> None:
    """FINETUNE_RECIPE, examples/finetune.toml [train] and every fine-tuned model of
    examples/lm_vs_cf.toml are one recipe (TOML has no anchors, so they are copies)."""
    import tomllib

    from abrec.demo import DEMO_CONFIG, FINETUNE_RECIPE

    root = Path(__file__).resolve().parents[2] / "examples"
    train = tomllib.loads((root / "finetune.toml").read_text())["train"]
    assert {k: train[k] for k in FINETUNE_RECIPE} == FINETUNE_RECIPE
    lm_vs_cf = tomllib.loads((root / "lm_vs_cf.toml").read_text())
    tuned = [m for m in lm_vs_cf["models"] if "finetune" in m.get("params", {})]
    assert len(tuned) == 6
    assert all(m["params"]["finetune"] == FINETUNE_RECIPE for m in tuned)
    champion = next(m for m in lm_vs_cf["models"] if m["name"] == "ltr_ft_drop_cb2")
    served = next(m for m in DEMO_CONFIG["models"] if m["name"] == "ltr_ft_drop_cb2")
    assert champion["params"] == served["params"] and champion["kind"] == served["kind"]


def test_compact_config_sets_the_ease_family_storage() -> None:
    """The demo stores EASE-family weights compactly; other kinds and explicit keys are kept."""
    from abrec.demo import COMPACT_WEIGHTS, DEMO_CONFIG, compact_config
    from abrec.offline.config import parse_config

    raw = {**DEMO_CONFIG, "models": [*DEMO_CONFIG["models"]]}
    raw["models"].append({"name": "e16", "kind": "ease", "params": {"storage_dtype": "float32"}})
    cfg = compact_config(parse_config(raw, "test"))
    by_name = {m.name: m for m in cfg.models}
    for name in ("ease", "ltr_cf", "ltr_ft_drop_cb2"):
        assert {k: by_name[name].params[k] for k in COMPACT_WEIGHTS} == COMPACT_WEIGHTS
    for name in ("popularity", "lm", "hybrid"):
        assert not set(COMPACT_WEIGHTS) & set(by_name[name].params)
    assert by_name["e16"].params == {"storage_dtype": "float32", "prune_top_k": 500}
    assert (
        by_name["ltr_ft_drop_cb2"].params["finetune"]
        == DEMO_CONFIG["models"][-1]["params"]["finetune"]
    )
