"""A reduced `abrec demo` through the real service: report, JSON and stored events agree."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from abrec.demo import stopping_look
from abrec.report import DemoReport

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ml_small_dir")]  # fails under CI

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


def _check_run(out: Path) -> DemoReport:
    report, results = out / "report.html", out / "results.json"
    assert report.is_file() and results.is_file()
    assert not (out / "bundle").exists()  # served models are dropped unless --keep-bundle
    rep = DemoReport.parse(results.read_text())  # results.json is the typed report
    page = report.read_text()
    assert "http://" not in page and "https://" not in page
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', page))
    assert rep.online is not None and rep.spec is not None and rep.simulation is not None
    assert rep.run is not None and rep.decision is not None and rep.offline is not None
    # results.json agrees with a direct SQL count on the run's SQLite store
    sql = _sql_counts(out / "events.db", rep.spec.id)
    variants = {v.variant: v for v in rep.online.variants}
    assert set(variants) == set(sql) == {"control", "treatment"}
    for name, v in variants.items():
        counts = {"units": v.n, **{k: v.totals[k] for k in ("exposures", "clicks", "conversions")}}
        for key, value in counts.items():
            assert value == sql[name][key], (name, key)
        assert sql[name]["rows"] == sql[name]["ids"]  # no duplicate events
        assert v.means["ctr"] == pytest.approx(sql[name]["clicks"] / sql[name]["exposures"])
    sim = rep.simulation.progress
    assert sum(s["clicks"] for s in sql.values()) == sim.clicks
    assert sum(s["exposures"] for s in sql.values()) == sim.exposures
    assert sum(s["units"] for s in sql.values()) == sim.units_seen <= USERS
    # the report shows those numbers
    for s in sql.values():
        assert f">{s['exposures']}<" in page and f">{s['clicks']}<" in page
    assert rep.online.srm is not None and rep.timeline
    # the demo displays the server's sequential result: the last look is the final result
    comp = rep.online.comparison()
    assert comp is not None and comp.sequential_ctr is not None
    seq = comp.sequential_ctr
    assert rep.timeline[-1].sequential == seq
    assert rep.timeline[-1].units == sum(s["units"] for s in sql.values())
    # the final estimate uses every unit: the CTR difference from the SQL counts
    ctr = {n: s["clicks"] / s["exposures"] for n, s in sql.items()}
    assert seq.estimate == pytest.approx(ctr["treatment"] - ctr["control"])
    assert seq.ci.low <= seq.estimate <= seq.ci.high
    # the demo stops early only on the server's "reject", and decides on the server's result
    # (an early stop is decided on the result of the poll that stopped it)
    stop = stopping_look(rep)
    if rep.run.stopped_by == "sequential test decided":
        assert stop is not None and stop.decision == "reject"
        assert sum(look.decisive for look in rep.timeline) == 1
    else:
        assert stop is None
    decided_on = stop.sequential if stop is not None else seq
    if decided_on.decision == "continue":
        assert rep.decision.winner is None
    assert rep.offline.leaderboard and rep.decision.verdict in page
    return rep


def test_reduced_demo_ab(tmp_path: Path) -> None:
    out = tmp_path / "ab"
    proc = _demo(out, "--seed", "1")
    rep = _check_run(out)
    assert rep.online is not None
    # the champion runs fine-tuned when its encoder is cached, else on frozen vectors, said so
    control, treatment = (v.model for v in rep.online.variants)
    assert control == "ltr_cf" and treatment in {"ltr_ft_drop_cb2", "ltr_ft_drop_cb2_frozen"}
    notes = " ".join(rep.run.model_notes)
    assert ("not cached" in notes) == treatment.endswith("_frozen")
    assert "cache" in notes and "models:" in proc.stdout
    assert "Decision:" in proc.stdout and "SRM check" in proc.stdout
    comp = rep.online.comparison()
    assert comp is not None and any(t.metric == "ctr" for t in comp.tests)
    cuped = comp.cuped_clicks_per_unit
    assert cuped is not None and cuped.variance_reduction is not None
    assert rep.agreement[0].offline_metric == "ndcg@10"


def test_reduced_demo_aa_declares_no_winner(tmp_path: Path) -> None:
    out = tmp_path / "aa"
    proc = _demo(out, "--aa", "--seed", "2")
    rep = _check_run(out)
    assert rep.online is not None and rep.decision is not None
    assert [v.model for v in rep.online.variants] == ["ltr_cf", "ltr_cf"]
    assert rep.decision.winner is None
    assert "no winner" in rep.decision.verdict
    assert "A/A" in proc.stdout
