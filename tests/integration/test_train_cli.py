"""`abrec train` end to end through the typer app, then `abrec evaluate` on the tuned encoder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import train_synthetic as syn

from abrec.cli import app
from abrec.embed import TextEncoder

runner = CliRunner()


def _write_dataset(folder: Path) -> tuple[Path, Path]:
    items = syn.catalog()
    inter = syn.interactions()
    frame = inter.to_frame()
    frame.to_csv(folder / "ratings.csv", index=False)
    pd.DataFrame({"item_id": items.item_ids, "description": list(items.text)}).to_csv(
        folder / "items.csv", index=False
    )
    return folder / "ratings.csv", folder / "items.csv"


def _config(tmp: Path, extra: str = "") -> Path:
    ratings, items = _write_dataset(tmp)
    cfg = tmp / "finetune.toml"
    cfg.write_text(
        f"""
name = "tiny"
[dataset]
kind = "generic"
interactions = "{ratings.name}"
items = "{items.name}"
[protocol]
name = "temporal"
test_fraction = 0.2
[train]
epochs = 1
batch_size = 8
learning_rate = 1e-4
max_examples_per_user = 2
n_negatives = 20
val_fraction = 0.2
max_seq_length = 32
cpu_threads = 1
device = "cpu"
output_dir = "{tmp / "out"}"
{extra}
"""
    )
    return cfg


def test_bad_train_key_exits_2_naming_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "learning_rat = 0.1")
    res = runner.invoke(app, ["train", "--config", str(cfg), "--quiet"])
    assert res.exit_code == 2
    assert "train.learning_rat: unknown key" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["train", "--config", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "not found" in res.output


def test_train_then_evaluate_with_the_tuned_encoder(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    out = tmp_path / "elsewhere"
    res = runner.invoke(app, ["train", "--config", str(cfg), "--output", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "learning curve" in res.output
    assert "best epoch" in res.output
    assert "where the time went" in res.output and "training steps" in res.output
    assert "[encoder] model =" in res.output
    model_dir = out / "model"
    curve = json.loads((out / "learning_curve.json").read_text())
    assert [h["epoch"] for h in curve["history"]] == [0, 1]
    assert curve["timings_s"]["train_s"] > 0 and curve["timings_s"]["data_s"] >= 0
    assert (out / "learning_curve.png").is_file()
    assert (out / "checkpoints" / "epoch-001.pt").is_file()
    # resume on a finished run trains nothing more and keeps the history
    res = runner.invoke(
        app, ["train", "--config", str(cfg), "--output", str(out), "--resume", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    again = json.loads((out / "learning_curve.json").read_text())
    assert again["history"] == curve["history"]

    # the tuned folder is an ordinary local model for every language-model recommender
    assert TextEncoder(model_dir, use_cache=False).identity != TextEncoder().identity
    run_cfg = tmp_path / "run.toml"
    run_cfg.write_text(
        f"""
name = "tuned"
[dataset]
kind = "generic"
interactions = "ratings.csv"
items = "items.csv"
[protocol]
name = "temporal"
[encoder]
model = "{model_dir}"
cache_dir = "{tmp_path / "cache"}"
[evaluation]
ks = [10]
n_bootstrap = 200
n_permutations = 200
[[models]]
name = "popularity"
kind = "popularity"
[[models]]
name = "lm"
kind = "lm"
"""
    )
    res = runner.invoke(
        app, ["evaluate", "--config", str(run_cfg), "--output", str(tmp_path / "run"), "-q"]
    )
    assert res.exit_code == 0, res.output
    resolved = (tmp_path / "run" / "config.resolved.toml").read_text()
    assert str(model_dir) in resolved
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "lm" in json.dumps(summary["run"]["models"])
