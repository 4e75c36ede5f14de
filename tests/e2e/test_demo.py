"""A reduced `abrec demo` through the real service: report, JSON and stored events agree."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DATA = os.environ.get("ABREC_DATA")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not DATA or not (Path(DATA) / "ml-latest-small" / "ratings.csv").is_file(),
        reason="needs MovieLens latest-small under ABREC_DATA",
    ),
]

USERS = 300


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("abrec")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "140"}
    env.pop("ABREC_ADMIN_TOKEN", None)  # the demo makes its own
    proc = subprocess.run(
        [str(exe), "demo", "--users", str(USERS), "--output", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=840,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _sql_counts(db: Path, experiment: str) -> dict[str, dict[str, int]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT variant, SUM(type = 'exposure'), SUM(type = 'click'), "
            "SUM(type = 'conversion'), COUNT(DISTINCT CASE WHEN type = 'exposure' "
            "THEN unit_id END), COUNT(*), COUNT(DISTINCT event_id) "
            "FROM abrec_events WHERE experiment = ? GROUP BY variant",
            (experiment,),
        ).fetchall()
    finally:
        con.close()
    return {
        r[0]: {
            "exposures": r[1],
            "clicks": r[2],
            "conversions": r[3],
            "units": r[4],
            "rows": r[5],
            "ids": r[6],
        }
        for r in rows
    }


def _check_run(out: Path) -> dict[str, Any]:
    report, results = out / "report.html", out / "results.json"
    assert report.is_file() and results.is_file()
    assert not (out / "bundle").exists()  # served models are dropped unless --keep-bundle
    data = json.loads(results.read_text())
    page = report.read_text()
    assert "http://" not in page and "https://" not in page
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', page))
    # results.json agrees with a direct SQL count on the run's SQLite store
    sql = _sql_counts(out / "events.db", data["spec"]["id"])
    variants = {v["name"]: v for v in data["online"]["variants"]}
    assert set(variants) == set(sql) == {"control", "treatment"}
    for name, v in variants.items():
        for key in ("exposures", "clicks", "conversions", "units"):
            assert v[key] == sql[name][key], (name, key)
        assert sql[name]["rows"] == sql[name]["ids"]  # no duplicate events
        assert v["ctr"] == pytest.approx(v["clicks"] / v["exposures"])
    sim = data["simulation"]
    assert sum(v["clicks"] for v in variants.values()) == sim["clicks"]
    assert sum(v["exposures"] for v in variants.values()) == sim["exposures"]
    assert sum(v["units"] for v in variants.values()) == sim["units_seen"] <= USERS
    # the report shows those numbers
    for v in variants.values():
        assert f">{v['exposures']}<" in page and f">{v['clicks']}<" in page
    assert data["online"]["srm"] is not None and data["timeline"]
    # the sequential row shows the running-minimum p-value over all looks
    running = data["sequential_running"]
    assert data["online"]["sequential"][0]["p_value"] == running["p_value"]
    assert data["offline"]["leaderboard"] and data["decision"]["verdict"] in page
    return data


def test_reduced_demo_ab(tmp_path: Path) -> None:
    out = tmp_path / "ab"
    proc = _demo(out, "--seed", "1")
    data = _check_run(out)
    assert [v["model"] for v in data["online"]["variants"]] == ["ease", "hybrid"]
    assert "Decision:" in proc.stdout and "SRM check" in proc.stdout
    effects = {(e["metric"], e["method"]) for e in data["online"]["effects"]}
    assert any(m == "ctr" for m, _ in effects)
    assert any(e["variance_reduction"] is not None for e in data["online"]["effects"])
    assert data["agreement"][0]["offline_metric"] == "ndcg@10"


def test_reduced_demo_aa_declares_no_winner(tmp_path: Path) -> None:
    out = tmp_path / "aa"
    proc = _demo(out, "--aa", "--seed", "2")
    data = _check_run(out)
    assert [v["model"] for v in data["online"]["variants"]] == ["ease", "ease"]
    assert data["decision"]["winner"] is None
    assert "no winner" in data["decision"]["verdict"]
    assert "A/A" in proc.stdout
