"""HTML/JSON report: self-contained, contains the numbers it is given."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from abrec.report import ReportError, render_html, write_report
from abrec.report.html import fmt


def _results() -> dict[str, Any]:
    return {
        "title": "abrec demo: ease vs hybrid",
        "meta": {"seed": 7, "users": 610, "store": "sqlite:///runs/x/events.db"},
        "decision": {
            "winner": "treatment",
            "verdict": "treatment wins on CTR",
            "text": "always-valid p = 0.0012",
        },
        "offline": {
            "primary_metric": "ndcg@10",
            "baseline": "ease",
            "leaderboard": [
                {
                    "model": "ease",
                    "metrics": {
                        "ndcg@10": {"estimate": 0.10231, "low": 0.0912, "high": 0.1144},
                        "recall@10": {"estimate": 0.0731, "low": 0.0655, "high": 0.0812},
                    },
                },
                {
                    "model": "hybrid",
                    "metrics": {
                        "ndcg@10": {"estimate": 0.11172, "low": 0.0998, "high": 0.1233},
                        "recall@10": {"estimate": 0.0802, "low": 0.0721, "high": 0.0893},
                    },
                },
            ],
            "comparisons": [
                {
                    "model": "hybrid",
                    "baseline": "ease",
                    "metric": "ndcg@10",
                    "estimate": 0.00941,
                    "low": 0.00312,
                    "high": 0.01577,
                    "p_value": 0.00385,
                }
            ],
        },
        "online": {
            "experiment": "demo",
            "control": "control",
            "variants": [
                {
                    "name": "control",
                    "model": "ease",
                    "weight": 0.5,
                    "units": 301,
                    "exposures": 11873,
                    "clicks": 1043,
                    "conversions": 311,
                    "ctr": 0.087846,
                },
                {
                    "name": "treatment",
                    "model": "hybrid",
                    "weight": 0.5,
                    "units": 309,
                    "exposures": 12210,
                    "clicks": 1187,
                    "conversions": 356,
                    "ctr": 0.097215,
                },
            ],
            "srm": {"chi2": 0.10492, "p_value": 0.74601, "mismatch": False},
            "effects": [
                {
                    "variant": "treatment",
                    "metric": "ctr",
                    "method": "delta",
                    "control_mean": 0.087846,
                    "treatment_mean": 0.097215,
                    "estimate": 0.009369,
                    "low": 0.00121,
                    "high": 0.01753,
                    "relative": 0.10665,
                    "relative_low": 0.0122,
                    "relative_high": 0.2011,
                    "p_value": 0.02431,
                    "p_adjusted": 0.04862,
                    "variance_reduction": None,
                },
                {
                    "variant": "treatment",
                    "metric": "clicks_per_unit",
                    "method": "cuped",
                    "control_mean": 3.4651,
                    "treatment_mean": 3.8414,
                    "estimate": 0.3763,
                    "low": 0.0144,
                    "high": 0.7382,
                    "relative": 0.1086,
                    "relative_low": 0.0041,
                    "relative_high": 0.2131,
                    "p_value": 0.04158,
                    "p_adjusted": 0.04862,
                    "variance_reduction": 0.31257,
                },
            ],
            "sequential": [
                {
                    "variant": "treatment",
                    "metric": "ctr",
                    "estimate": 0.009369,
                    "low": -0.00213,
                    "high": 0.02087,
                    "p_value": 0.31337,
                    "decision": "continue",
                }
            ],
            "guardrails": [
                {
                    "variant": "treatment",
                    "metric": "exposures_per_unit",
                    "estimate": 0.0912,
                    "low": -0.2231,
                    "high": 0.4055,
                    "passed": True,
                }
            ],
        },
        "timeline": [
            {
                "elapsed_s": 1.0 * i,
                "units": 50 * i,
                "exposures": 900 * i,
                "clicks": 80 * i,
                "variant": "treatment",
                "estimate": 0.01 / i,
                "low": -0.05 / i,
                "high": 0.07 / i,
                "p_value": 0.9,
            }
            for i in range(1, 8)
        ],
        "agreement": [
            {
                "variant": "treatment",
                "offline_metric": "ndcg@10",
                "offline_estimate": 0.00941,
                "offline_low": 0.00312,
                "offline_high": 0.01577,
                "online_metric": "ctr",
                "online_estimate": 0.10665,
                "online_low": 0.0122,
                "online_high": 0.2011,
            }
        ],
        "analysis": {"raw": [1, 2, 3], "nan": float("nan")},
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full report written once for the module (rendering plots is the slow part)."""
    return write_report(tmp_path_factory.mktemp("report") / "run", _results())


def test_report_files_and_json_round_trip(written: Path) -> None:
    res = _results()
    assert written.name == "report.html" and written.exists()
    data = json.loads((written.parent / "results.json").read_text())
    assert data["analysis"]["nan"] is None  # NaN written as null, JSON stays strict
    res["analysis"]["nan"] = None
    assert data == json.loads(json.dumps(res))


def test_report_is_self_contained(written: Path) -> None:
    page = written.read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    srcs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(srcs) >= 5  # leaderboard, assignment, lift, confidence sequence, 2x agreement
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
        "11873",
        "1187",
        "0.0972",  # treatment CTR
        "0.746",  # SRM p
        "no sample-ratio mismatch",
        "+10.66% [+1.22%, +20.11%]",  # relative lift CI
        "+31.26%",  # CUPED variance reduction
        "0.0243",  # p-values: 3 significant digits
        "0.0486",
        "0.009369 [-0.00213, 0.02087]",  # sequential CI
        "continue",
        "exposures_per_unit",
        "treatment wins on CTR",
        "always-valid p = 0.0012",
        "sqlite:///runs/x/events.db",
    ]:
        assert text in page, text


def test_report_flags_srm_and_failed_guardrail_and_escapes(tmp_path: Path) -> None:
    res = _results()
    res["online"]["srm"] = {"chi2": 40.2, "p_value": 2.3e-10, "mismatch": True}
    res["online"]["guardrails"][0]["passed"] = False
    res["offline"]["leaderboard"][0]["model"] = "<script>alert(1)</script>"
    res["decision"] = {"winner": None, "verdict": "no winner", "text": ""}
    res["timeline"] = res["agreement"] = []
    page = render_html(json.loads(json.dumps(res)))
    assert "sample-ratio mismatch (p &lt; 0.001)" in page
    assert ">fail<" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'class="banner nowin"' in page


def test_report_minimal_and_bad_input(tmp_path: Path) -> None:
    path = write_report(tmp_path, {"title": "empty"})
    assert "<h1>empty</h1>" in path.read_text()
    with pytest.raises(ReportError):
        render_html([1, 2])  # type: ignore[arg-type]


def test_fmt() -> None:
    assert fmt(0.123456) == "0.1235"
    assert fmt(12) == "12" and fmt(np.int64(3)) == "3"
    assert fmt(None) == "–" and fmt(math.nan) == "–" and fmt(True) == "yes"
    assert fmt(1.5e-7, 3) == "1.5e-07"
