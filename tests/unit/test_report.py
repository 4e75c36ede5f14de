"""HTML/JSON report: typed input, self-contained page, contains the numbers it is given."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from abrec.experiment.analysis import (
    ExperimentResults,
    GuardrailResult,
    RunningSequentialResult,
    TreatmentResult,
)
from abrec.experiment.spec import ExperimentSpec
from abrec.report import (
    Agreement,
    Decision,
    DemoReport,
    LeaderboardRow,
    Look,
    OfflineComparison,
    OfflineSection,
    ReportError,
    RunInfo,
    SimulationInfo,
    render_html,
    write_report,
)
from abrec.simulate import experiment_spec
from abrec.simulate.click_model import ClickModel
from abrec.simulate.runner import SimulationProgress
from abrec.stats import SRM_THRESHOLD, Comparison, EffectResult, Interval, SRMResult, VariantSummary


def _effect(
    metric: str,
    method: str,
    means: tuple[float, float],
    diff: Interval,
    rel: Interval,
    p: float,
    vr: float | None = None,
) -> EffectResult:
    return EffectResult(
        method=method,
        metric=metric,
        control_mean=means[0],
        treatment_mean=means[1],
        n_control=301,
        n_treatment=309,
        absolute=diff,
        relative=rel,
        p_value=p,
        alpha=0.05,
        alternative="two-sided",
        variance_reduction=vr,
    )


def _seq(low: float, high: float, p: float) -> RunningSequentialResult:
    return RunningSequentialResult(
        method="always-valid",
        metric="ctr",
        estimate=0.009369,
        ci=Interval(0.009369, low, high),
        p_value=p,
        decision="continue",
        n_control=301,
        n_treatment=309,
        alpha=0.05,
        rho=0.01,
    )


def _online() -> ExperimentResults:
    ctr = _effect(
        "ctr",
        "delta",
        (0.087846, 0.097215),
        Interval(0.009369, 0.00121, 0.01753),
        Interval(0.10665, 0.0122, 0.2011),
        0.02431,
    )
    cuped = _effect(
        "clicks_per_unit",
        "cuped",
        (3.4651, 3.8414),
        Interval(0.3763, 0.0144, 0.7382),
        Interval(0.1086, 0.0041, 0.2131),
        0.04158,
        vr=0.31257,
    )
    comp = TreatmentResult(
        treatment="treatment",
        control="control",
        primary=None,
        tests=(Comparison("ctr", "treatment", "ratio", ctr, 0.02431, 0.04862, 0.03, True),),
        sequential_ctr=_seq(-0.00213, 0.02087, 0.31337),
        cuped_clicks_per_unit=cuped,
        guardrails=(
            GuardrailResult("exposures_per_unit", 0.0912, -0.2231, 0.4055, 0.01, 0.9, True),
        ),
        notes=(),
    )
    variants = tuple(
        VariantSummary(
            name, n, {"ctr": ctr_}, {"exposures": e, "clicks": c, "conversions": k}, model, 0.5
        )
        for name, model, n, e, c, k, ctr_ in [
            ("control", "ease", 301, 11873.0, 1043.0, 311.0, 0.087846),
            ("treatment", "hybrid", 309, 12210.0, 1187.0, 356.0, 0.097215),
        ]
    )
    srm = SRMResult(0.10492, 0.74601, False, (305.0, 305.0), (301, 309))
    return ExperimentResults("demo", "running", "control", 0.05, "ctr", variants, srm, (comp,), ())


def _report() -> DemoReport:
    ndcg = {"ease": Interval(0.10231, 0.0912, 0.1144), "hybrid": Interval(0.11172, 0.0998, 0.1233)}
    recall = {"ease": Interval(0.0731, 0.0655, 0.0812), "hybrid": Interval(0.0802, 0.0721, 0.0893)}
    offline = OfflineSection(
        primary_metric="ndcg@10",
        baseline="ease",
        leaderboard=tuple(
            LeaderboardRow(m, {"ndcg@10": ndcg[m], "recall@10": recall[m]})
            for m in ("ease", "hybrid")
        ),
        comparisons=(
            OfflineComparison(
                "hybrid",
                "ease",
                "ndcg@10",
                Interval(0.00941, 0.00312, 0.01577),
                0.00385,
                "paired permutation, Holm",
            ),
        ),
        protocol="ml-small-temporal-v1",
        n_scored_users=600,
    )
    timeline = tuple(
        Look(1.0 * i, 50 * i, 900 * i, 80 * i, _seq(-0.05 / i, 0.07 / i, 0.9)) for i in range(1, 8)
    )
    progress = SimulationProgress(40, 40, 610, 24083, 2230, 667, 27000, 27000, 0, 12.5, False)
    return DemoReport(
        title="abrec demo: ease vs hybrid",
        decision=Decision("treatment", "treatment wins on CTR", "always-valid p = 0.0012"),
        run=RunInfo(
            "A/B",
            "demo",
            "ease",
            "hybrid",
            610,
            40,
            40,
            "planned sample reached",
            7,
            "sqlite:///runs/x/events.db",
            12.34,
            math.nan,
        ),
        offline=offline,
        online=_online(),
        timeline=timeline,
        agreement=(
            Agreement(
                "treatment",
                "ndcg@10",
                Interval(0.00941, 0.00312, 0.01577),
                "ctr",
                Interval(0.10665, 0.0122, 0.2011),
            ),
        ),
        simulation=SimulationInfo(progress, ClickModel(), 5.0, 10),
        spec=ExperimentSpec.model_validate(experiment_spec("demo", "ease", "hybrid")),
        timings={"offline_s": 12.34, "online_s": math.nan},
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full report written once for the module (rendering plots is the slow part)."""
    return write_report(tmp_path_factory.mktemp("report") / "run", _report())


def test_results_json_is_the_typed_report(written: Path) -> None:
    assert written.name == "report.html" and written.exists()
    text = (written.parent / "results.json").read_text()
    data = json.loads(text)  # strict JSON: NaN written as null
    assert data["timings"] == {"offline_s": 12.34, "online_s": None}
    assert data["run"]["online_s"] is None
    # the online part has exactly the results endpoint's JSON shape
    assert data["online"] == json.loads(_online().to_json()) == _online().to_dict()
    assert data["timeline"][0]["sequential"]["ci"]["low"] == -0.05
    # and the whole document parses back into the same report (NaN back where it was)
    back = DemoReport.parse(text)
    assert back.timings["offline_s"] == 12.34 and math.isnan(back.timings["online_s"])
    assert back.run is not None and back.run.online_s is None
    expected = _report()
    assert dataclasses.replace(back, timings={}, run=None) == dataclasses.replace(
        expected, timings={}, run=None
    )
    assert back.timeline[3].p_value == 0.9 and back.timeline[3].low == pytest.approx(-0.05 / 4)
    assert DemoReport.parse(data) == back


def test_report_is_self_contained(written: Path) -> None:
    page = written.read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(srcs) == 6  # leaderboard, assignment, lift, confidence sequence, 2x agreement
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_contains_the_numbers(written: Path) -> None:
    page = written.read_text()
    for text in [
        "0.1023",  # ease ndcg
        "0.1117",  # hybrid ndcg
        "[0.0998, 0.1233]",
        "0.00941 [0.00312, 0.01577]",  # paired diff + CI
        "0.00385",
        ">11873<",  # raw counts as integers
        ">1187<",
        ">356<",
        "0.0972",  # treatment CTR
        "0.746",  # SRM p
        "no sample-ratio mismatch",
        "+10.66% [+1.22%, +20.11%]",  # relative lift CI
        "+31.26%",  # CUPED variance reduction
        "0.0243",  # p-values: 3 significant digits
        "0.0486",
        "0.009369 [-0.00213, 0.02087]",  # sequential CI
        "0.313",  # always-valid p
        "continue",
        "exposures_per_unit",
        "0.0912 [-0.2231, 0.4055]",  # guardrail
        "treatment wins on CTR",
        "always-valid p = 0.0012",
        "sqlite:///runs/x/events.db",
        "40 / 40",
        "12.3",
        "7 looks; last look after 7 s: 350 units, 6300 exposures, 560 clicks.",
    ]:
        assert text in page, text


def test_report_flags_srm_and_failed_guardrail_and_escapes() -> None:
    rep = _report()
    online = rep.online
    assert online is not None and online.srm is not None
    comp = online.comparisons[0]
    bad_guard = dataclasses.replace(comp.guardrails[0], passed=False)
    online = dataclasses.replace(
        online,
        srm=dataclasses.replace(online.srm, mismatch=True, p_value=2.3e-10, threshold=0.01),
        comparisons=(dataclasses.replace(comp, guardrails=(bad_guard,)),),
    )
    assert rep.offline is not None
    board = (
        dataclasses.replace(rep.offline.leaderboard[0], model="<script>alert(1)</script>"),
        *rep.offline.leaderboard[1:],
    )
    rep = dataclasses.replace(
        rep,
        online=online,
        offline=dataclasses.replace(rep.offline, leaderboard=board),
        decision=Decision(None, "no winner", ""),
        timeline=(),
        agreement=(),
    )
    page = render_html(rep)
    # the threshold is the SRM result's, not a hard-coded one
    assert "sample-ratio mismatch (p &lt; 0.01)" in page and "p &lt; 0.001)" not in page
    assert ">fail<" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'class="banner nowin"' in page
    default = dataclasses.replace(online.srm, threshold=SRM_THRESHOLD)
    page = render_html(dataclasses.replace(rep, online=dataclasses.replace(online, srm=default)))
    assert f"sample-ratio mismatch (p &lt; {SRM_THRESHOLD:g})" in page


def test_report_minimal_and_bad_input(tmp_path: Path) -> None:
    path = write_report(tmp_path, DemoReport(title="empty <1>"))
    page = path.read_text()
    assert "<h1>empty &lt;1&gt;</h1>" in page and "<img" not in page
    assert DemoReport.parse((tmp_path / "results.json").read_text()) == DemoReport("empty <1>")
    with pytest.raises(ReportError, match="DemoReport"):
        render_html({"title": "a dict"})  # type: ignore[arg-type]


def test_interleaving_section_renders_and_round_trips() -> None:
    from abrec.interleave import Impression, analyze_interleaving
    from abrec.report import DemoReport, render_html
    from abrec.report.model import InterleavingSection

    imps = [Impression(f"u{i}", ["control", "treatment"], [False, i % 3 != 0]) for i in range(30)]
    res = analyze_interleaving("team_draft", ["control", "treatment"], imps, n_resamples=200)
    section = InterleavingSection(
        experiment="demo-interleaving", method="team_draft", result=res, units=30,
        decided=True, verdict="treatment preferred", stopped_by="sequential test decided",
        ab_units=610, ab_decided=False, ab_verdict="no winner",
    )  # fmt: skip
    report = DemoReport(title="t", interleaving=section)
    page = render_html(report)
    assert "Interleaving screen of the same pair" in page
    assert ">20<" in page and ">0<" in page and ">10<" in page  # wins, losses, ties
    back = DemoReport.parse(report.to_json())
    assert back.interleaving is not None and back.interleaving.result is not None
    assert back.interleaving.result.primary.wins == 20
    assert back.interleaving.ab_units == 610
