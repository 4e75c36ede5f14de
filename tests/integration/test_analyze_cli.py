"""`abrec analyze` end to end on real CSV and Parquet files."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from typer.testing import CliRunner

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


def _ratio_ref(c: pd.DataFrame, t: pd.DataFrame) -> tuple[float, float, float, float]:
    """Delta-method CTR difference re-derived from the per-unit arrays: (est, low, high, p)."""

    def moments(g: pd.DataFrame) -> tuple[float, float]:
        y, d = g.clicks.to_numpy(float), g.exposures.to_numpy(float)
        r = y.sum() / d.sum()
        cov = np.cov(y, d, ddof=1)
        return r, (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / d.mean() ** 2 / y.size

    (rc, vc), (rt, vt) = moments(c), moments(t)
    se, diff, q = math.sqrt(vc + vt), rt - rc, sps.norm.ppf(0.975)
    return diff, diff - q * se, diff + q * se, 2 * sps.norm.sf(abs(diff) / se)


def _cuped_ref(c: pd.DataFrame, t: pd.DataFrame) -> tuple[float, float, float, float]:
    """CUPED: theta pooled over both groups, then scipy's Welch test: (est, low, high, p)."""
    both = pd.concat([c, t])
    x = both.pre_revenue.to_numpy()
    theta = np.cov(x, both.revenue.to_numpy(), ddof=1)[0, 1] / x.var(ddof=1)
    ca = c.revenue.to_numpy() - theta * (c.pre_revenue.to_numpy() - x.mean())
    ta = t.revenue.to_numpy() - theta * (t.pre_revenue.to_numpy() - x.mean())
    res = sps.ttest_ind(ta, ca, equal_var=False)
    ci = res.confidence_interval(0.95)
    return ta.mean() - ca.mean(), ci.low, ci.high, res.pvalue


def test_json_matches_independent_references(csv: Path, data: pd.DataFrame) -> None:
    res = runner.invoke(app, ["analyze", str(csv), *ARGS, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [v["variant"] for v in out["variants"]] == ["A", "B", "C"]
    counts = [int((data.group == g).sum()) for g in "ABC"]
    chi2, p_srm = sps.chisquare(counts)
    assert out["srm"]["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert out["srm"]["p_value"] == pytest.approx(p_srm, rel=1e-9)
    assert out["srm"]["mismatch"] is False
    comps = {(c["metric"], c["variant"]): c for c in out["comparisons"]}
    assert len(comps) == 6
    a = data[data.group == "A"]
    for v in "BC":
        b = data[data.group == v]
        # two-proportion z-test (pooled) and Wald CI, from statsmodels
        conv = comps[("converted", v)]["result"]
        count, nobs = [b.converted.sum(), a.converted.sum()], [len(b), len(a)]
        assert conv["p_value"] == pytest.approx(proportions_ztest(count, nobs)[1], rel=1e-9)
        low, high = confint_proportions_2indep(
            count[0], nobs[0], count[1], nobs[1], method="wald", compare="diff"
        )
        assert [conv["absolute"]["low"], conv["absolute"]["high"]] == pytest.approx([low, high])
        for metric, ref in (("revenue", _cuped_ref(a, b)), ("clicks/exposures", _ratio_ref(a, b))):
            got = comps[(metric, v)]["result"]
            abs_ = got["absolute"]
            values = [abs_["estimate"], abs_["low"], abs_["high"], got["p_value"]]
            assert values == pytest.approx(list(ref), rel=1e-7, abs=1e-12), (metric, v)
        assert comps[("revenue", v)]["result"]["method"] == "cuped"
        assert comps[("revenue", v)]["result"]["variance_reduction"] > 0.3
    ps = [c["p_value"] for c in out["comparisons"]]
    holm, bh = multipletests(ps, method="holm")[1], multipletests(ps, method="fdr_bh")[1]
    assert [c["p_value_holm"] for c in out["comparisons"]] == pytest.approx(holm, rel=1e-12)
    assert [c["p_value_bh"] for c in out["comparisons"]] == pytest.approx(bh, rel=1e-12)


def test_table_output(csv: Path) -> None:
    res = runner.invoke(app, ["analyze", str(csv), *ARGS])
    assert res.exit_code == 0, res.output
    for text in (
        "Variants (control: A)",
        "p (Holm)",
        "p (BH)",
        "cuped",
        "delta-ratio",
        "variance reduction",
    ):
        assert text in res.stdout, text
    assert re.search(r"[+-]\d+\.\d\d%", res.stdout)  # relative effects as signed percentages


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
