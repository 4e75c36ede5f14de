"""`abrec loop` through the real service and store: an A/A loop never promotes, the report
matches what the store holds, and feedback clicks become training interactions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abrec.data.types import Interactions
from abrec.loop import load_loop_config, run_loop
from abrec.loop.run import feedback_clicks, with_feedback
from abrec.store import EventStore, Impression

ROOT = Path(__file__).resolve().parents[2]

AA_CONFIG = """
name = "loop-aa"
seed = 7
[dataset]
kind = "movielens"
[protocol]
name = "ml-small-temporal-v1"
[evaluation]
ks = [10]
primary_metric = "ndcg@10"
[loop]
rounds = 2
champion = "popularity"
screen_top = 1
interleaving_users = 80
ab_users = 80
min_ab_units = 40
sessions_mean = 2.0
poll_s = 0.5
[[models]]
name = "popularity"
kind = "popularity"
[[models]]
name = "popularity_twin"
kind = "popularity"
"""


@pytest.mark.slow
@pytest.mark.usefixtures("ml_small_dir")  # fails under CI when the data is missing
def test_aa_loop_never_promotes_and_reports_every_round(tmp_path: Path) -> None:
    cfg_path = tmp_path / "loop.toml"
    cfg_path.write_text(AA_CONFIG)
    result = run_loop(load_loop_config(cfg_path), tmp_path / "run")
    assert not result.interrupted
    assert [r.round for r in result.rounds] == [1, 2]
    assert all(not r.promoted for r in result.rounds)
    assert result.champion == "popularity"
    # identical models: offline they tie exactly, so the twin reaches the interleaving screen
    for r in result.rounds:
        (off,) = r.offline
        assert off.model == "popularity_twin" and off.difference.estimate == 0.0
        assert r.screened_in == ("popularity_twin",)
        (il,) = r.interleaving
        assert il.units > 0 and il.wins + il.losses + il.ties == il.units
    # round 2 retrained on round 1's clicks
    store = EventStore.from_url(result.store_url)
    try:
        r1 = [i for x in result.rounds[0].interleaving for i in store.impressions(x.experiment)]
        if result.rounds[0].ab is not None:
            r1 += store.impressions(result.rounds[0].ab.experiment)
        assert result.rounds[1].feedback_clicks == len(feedback_clicks(r1)) > 0
        il = result.rounds[0].interleaving[0]
        assert len({imp.unit_id for imp in store.impressions(il.experiment)}) == il.units
    finally:
        store.dispose()
    doc = json.loads((tmp_path / "run" / "loop.json").read_text())
    assert doc["champion"] == "popularity" and len(doc["rounds"]) == 2
    assert [r["users"] for r in doc["rounds"]] == [r.users for r in result.rounds]
    html = (tmp_path / "run" / "loop.html").read_text()
    assert "Round 2" in html and "data:image/png;base64," in html


def test_feedback_clicks_become_positive_interactions() -> None:
    train = Interactions(
        user_idx=np.array([0, 1]),
        item_idx=np.array([0, 1]),
        user_ids=np.array(["u0", "u1"], dtype=object),
        item_ids=np.array(["a", "b", "c"], dtype=object),
        ratings=np.array([3.0, 4.0], dtype=np.float32),
        timestamps=np.array([10, 20]),
    )
    imp = Impression("u1", "r1", None, ["c", "a", "zz"], [None] * 3, [1.0] * 3, [True, False, True])  # type: ignore[arg-type]
    clicks = feedback_clicks([imp])
    assert clicks == [("u1", "c"), ("u1", "zz")]
    out = with_feedback(train, [*clicks, ("nobody", "a")], rating=5.0)
    assert out.user_idx.tolist() == [0, 1, 1]  # the unknown item and user are dropped
    assert out.item_idx.tolist() == [0, 1, 2]
    assert out.ratings is not None and out.ratings.tolist() == [3.0, 4.0, 5.0]
    assert out.timestamps is not None and out.timestamps.tolist() == [10, 20, 21]
    assert with_feedback(train, [], rating=5.0) is train


@pytest.mark.slow
@pytest.mark.usefixtures("ml_small_dir")
def test_ctrl_c_stops_the_experiment_and_keeps_the_completed_rounds(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "loop.toml"
    cfg.write_text(AA_CONFIG.replace("rounds = 2", "rounds = 5"))
    out = tmp_path / "run"
    exe = Path(sys.executable).with_name("abrec")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [str(exe), "loop", "--config", str(cfg), "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out / "loop.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (out / "loop.json").exists(), "round 1 never finished"
    time.sleep(1.0)  # round 2 is under way
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, text[-2000:]
    doc = json.loads((out / "loop.json").read_text())
    assert doc["interrupted"] is True and 1 <= len(doc["rounds"]) < 5
    store = EventStore.from_url(doc["store_url"])
    try:
        specs = store.load_experiments()
        assert specs and all(s["status"] == "stopped" for s in specs)
    finally:
        store.dispose()
