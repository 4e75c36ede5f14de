"""`abrec evaluate` end to end through the typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from abrec.cli import app

runner = CliRunner()


def test_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('seed = 1\nbogus = 2\n[[models]]\nname = "p"\nkind = "popularity"\n')
    res = runner.invoke(app, ["evaluate", "--config", str(cfg), "--quiet"])
    assert res.exit_code == 2
    text = res.output
    assert "bogus: unknown key" in text
    assert "Traceback" not in text


def test_bad_baseline_message_keeps_brackets(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[evaluation]\nbaseline = "x"\n[[models]]\nname = "p"\nkind = "popularity"\n')
    res = runner.invoke(app, ["evaluate", "--config", str(cfg)])
    assert res.exit_code == 2
    assert "pick one of ['p']" in res.output


def test_missing_config_exits_2(tmp_path: Path) -> None:
    res = runner.invoke(app, ["evaluate", "--config", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2
    assert "not found" in res.output


REDUCED = """
name = "reduced"
seed = 42
[dataset]
kind = "movielens"
[protocol]
name = "ml-small-temporal-v1"
[evaluation]
baseline = "popularity"
ks = [10]
n_bootstrap = 500
n_permutations = 1000
[[models]]
name = "popularity"
kind = "popularity"
[[models]]
name = "ease"
kind = "ease"
params = { lambda_ = 500.0 }
[[models]]
name = "lm"
kind = "lm"
"""


@pytest.mark.slow
def test_evaluate_movielens_reduced(tmp_path: Path, ml_small_dir: Path) -> None:
    """The reduced config on MovieLens (skips without the data; fails under CI=true)."""
    cfg = tmp_path / "reduced.toml"
    cfg.write_text(REDUCED)
    run_dir = tmp_path / "run"
    res = runner.invoke(
        app,
        ["evaluate", "--config", str(cfg), "--output", str(run_dir), "--quiet"],
    )
    assert res.exit_code == 0, res.output
    assert "Leaderboard" in res.output and "Cold-item slice" in res.output
    assert str(run_dir) in res.output.replace("\n", "")
    for name in ("per_user.parquet", "summary.json", "config.resolved.toml", "comparisons.csv"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["protocol"] == "ml-small-temporal-v1"
    assert summary["info"]["n_scored_users"] == 592
    ease = summary["models"]["ease"]["all"]["ndcg@10"]["mean"]
    pop = summary["models"]["popularity"]["all"]["ndcg@10"]["mean"]
    assert ease == pytest.approx(0.102, abs=0.01)
    assert pop == pytest.approx(0.075, abs=0.01)
    per_user = pd.read_parquet(run_dir / "per_user.parquet")
    assert set(per_user["model"]) == {"popularity", "ease", "lm"}
    assert (per_user[per_user["slice"] == "all"].groupby("model").size() == 592).all()
    comp = [
        c
        for c in summary["comparisons"]
        if c["model"] == "ease" and c["metric"] == "ndcg@10" and c["slice"] == "all"
    ]
    assert comp and comp[0]["p_permutation_holm"] < 0.05
