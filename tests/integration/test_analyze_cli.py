"""`abrec analyze` end to end on real CSV and Parquet files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import abrec.stats as st
from abrec.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 6000
    g = rng.choice(["A", "B", "C"], n)
    pre = rng.gamma(2, 10, n)
    exposures = rng.poisson(5, n) + 1
    return pd.DataFrame(
        {
            "group": g,
            "converted": rng.binomial(1, np.where(g == "B", 0.13, 0.10)),
            "revenue": 0.7 * pre + rng.normal(0, 8, n) + np.where(g == "B", 1.0, 0.0),
            "pre_revenue": pre,
            "clicks": rng.binomial(exposures, 0.1),
            "exposures": exposures,
        }
    )


@pytest.fixture(scope="module")
def csv(data: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("ab") / "units.csv"
    data.to_csv(p, index=False)
    return p


ARGS = [
    "--variant-col",
    "group",
    "--control",
    "A",
    "--metric",
    "converted:proportion",
    "--metric",
    "revenue:mean",
    "--metric",
    "clicks/exposures:ratio",
    "--covariate",
    "revenue=pre_revenue",
]


def test_json_matches_direct_stats_calls(csv: Path, data: pd.DataFrame) -> None:
    res = runner.invoke(app, ["analyze", str(csv), *ARGS, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [v["variant"] for v in out["variants"]] == ["A", "B", "C"]
    assert out["srm"]["mismatch"] is False
    comps = {(c["metric"], c["variant"]): c for c in out["comparisons"]}
    assert len(comps) == 6
    a, b = data[data.group == "A"], data[data.group == "B"]
    z = st.ztest_proportions(
        st.MeanStats.from_array(a.converted), st.MeanStats.from_array(b.converted)
    )
    assert comps[("converted", "B")]["p_value"] == pytest.approx(z.p_value, rel=1e-9)
    cu = st.cuped_test(
        st.CupedStats.from_arrays(a.revenue, a.pre_revenue),
        st.CupedStats.from_arrays(b.revenue, b.pre_revenue),
    )
    assert comps[("revenue", "B")]["result"]["method"] == "cuped"
    assert comps[("revenue", "B")]["result"]["absolute"]["low"] == pytest.approx(cu.absolute.low)
    assert comps[("revenue", "B")]["result"]["variance_reduction"] > 0.3
    holm = st.holm([c["p_value"] for c in out["comparisons"]])
    assert [c["p_value_holm"] for c in out["comparisons"]] == pytest.approx(list(holm))


def test_parquet_and_bayesian_table(csv: Path, data: pd.DataFrame, tmp_path: Path) -> None:
    pq = tmp_path / "units.parquet"
    data.to_parquet(pq)
    res = runner.invoke(app, ["analyze", str(pq), *ARGS, "--method", "bayesian"])
    assert res.exit_code == 0, res.output
    assert "P(beat control)" in res.stdout and "beta-binomial" in res.stdout
    seq = runner.invoke(app, ["analyze", str(csv), *ARGS, "--method", "sequential", "--json"])
    assert seq.exit_code == 0, seq.output
    assert json.loads(seq.stdout)["comparisons"][0]["result"]["method"] == "mixture-sequential"


def test_srm_alarm_with_wrong_weights(csv: Path) -> None:
    res = runner.invoke(
        app, ["analyze", str(csv), *ARGS, "--weights", "A=0.5,B=0.25,C=0.25", "--json"]
    )
    assert res.exit_code == 0
    assert json.loads(res.stdout)["srm"]["mismatch"] is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric", "missing:mean"], "not in"),
        (["--metric", "revenue:proportion"], "only 0 and 1"),
        (["--metric", "revenue"], "COLUMN:KIND"),
        (["--metric", "revenue:mean", "--control", "Z"], "not found"),
        (["--metric", "revenue:mean", "--weights", "A=x"], "--weights"),
        (["--metric", "revenue:mean", "--method", "magic"], "method"),
    ],
)
def test_bad_input_exit_2_without_traceback(csv: Path, extra: list[str], message: str) -> None:
    res = runner.invoke(app, ["analyze", str(csv), *extra])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_real_entry_point_missing_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "abrec"),
            "analyze",
            str(tmp_path / "no.csv"),
            "--metric",
            "x:mean",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "file not found" in proc.stderr and "Traceback" not in proc.stderr
