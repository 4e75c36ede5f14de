"""benchmarks/bench_train.py's measuring core runs on a tiny synthetic dataset (so it cannot rot).

The counts it reports are checked against independent computations: pairs per timed step from
`epoch_batches`, the history text from a pandas sort of the liked events, token counts and
truncation from the tokenizer.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch
import train_synthetic as syn
from transformers import AutoTokenizer

from abrec.embed import default_model_path
from abrec.train import build_training_data
from abrec.train.validation import epoch_batches

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_train"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _history_reference(n_titles: int) -> str:
    """Liked (rating >= 4) titles of the user with most likes, by time, last n, '; '-joined."""
    inter, items = syn.split().train, syn.catalog()
    df = pd.DataFrame(
        {
            "user": inter.user_idx,
            "item": inter.item_idx,
            "rating": inter.ratings,
            "ts": inter.timestamps,
            "item_id": inter.item_ids[inter.item_idx],
        }
    )
    liked = df[df["rating"] >= 4.0].sort_values(["user", "ts", "item_id"], kind="stable")
    counts = liked.groupby("user").size()
    user = int(counts.index[np.argmax(counts.to_numpy())])  # first user among the longest
    titles = items.features["title"].to_numpy()
    return "; ".join(titles[liked[liked["user"] == user]["item"].to_numpy()[-n_titles:]])


def test_quick_run_measures_and_counts_right(bench: ModuleType, tmp_path: Path) -> None:
    split, items = syn.split(), syn.catalog()
    cfg = syn.config(tmp_path, max_examples_per_user=4, batch_size=5)
    data = build_training_data(split.train, items, cfg, "temporal")
    plan = epoch_batches(data.positive_items, cfg.batch_size, cfg.seed, 1)
    assert len({len(b) for b in plan}) > 1  # the pair count depends on which steps are timed
    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    query = _history_reference(6)
    cands = bench.candidate_texts(items, 10, 0)
    full = np.array([len(tok(query, c)["input_ids"]) for c in cands])
    length = int(np.median(full))  # some pairs exactly at the limit, some above
    opts = bench.BenchOptions(
        warmup_steps=len(plan) - 2,
        max_steps=5,  # only 2 steps are left in the epoch
        encode_texts=8,
        encode_batch_size=4,
        candidates=10,
        cross_lengths=(length,),
        cross_batches=(4, 10),
        history_titles=6,
        repeats=1,
    )
    assert bench.QUICK.max_steps <= 3 and bench.QUICK.repeats == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = bench.run_benchmark(split.train, items, cfg, "temporal", ["cpu"], opts)
    finally:
        torch.set_num_threads(threads)
    json.dumps(result)  # JSON-ready
    assert result["torch"] == torch.__version__ and result["torch_threads"] == 1
    assert result["training_pairs"] == len(data)

    (train,) = result["training"]
    assert train["steps_per_epoch"] == len(plan)
    assert train["timed_steps"] == 2 and train["warmup_steps"] == len(plan) - 2
    assert train["examples"] == len(plan[-2]) + len(plan[-1])
    assert train["pairs_per_epoch"] == sum(map(len, plan)) <= len(data)
    assert train["examples_per_s"] == pytest.approx(train["examples"] / train["seconds"])
    assert train["epoch_s_estimate"] == pytest.approx(train["seconds"] / 2 * len(plan))
    assert train["precision"] == "fp32" and train["device"] == "cpu"
    assert 0 < train["trainable_parameters"] <= train["total_parameters"]
    assert np.isfinite(train["mean_loss"]) and train["mean_loss"] > 0

    (enc,) = result["encoding"]
    assert enc["texts"] == 8 and enc["texts_per_s"] == pytest.approx(8 / enc["seconds_median"])
    encoded = bench.candidate_texts(items, 8, opts.seed + 1)
    assert enc["tokens_mean"] == pytest.approx(np.mean([len(tok(t)["input_ids"]) for t in encoded]))

    assert bench.history_text(split.train, items, 6, 4.0) == query
    rows = result["cross_encoder"]
    assert [(r["max_seq_length"], r["batch_size"]) for r in rows] == [(length, 4), (length, 10)]
    for r in rows:
        assert r["candidates"] == 10
        assert r["pair_tokens_mean"] == pytest.approx(full.mean())
        assert r["truncated_share"] == pytest.approx(np.mean(full > length))
        assert r["batch_tokens"] == length
        assert r["ms_per_100_candidates"] == pytest.approx(r["ms_median"] * 10)
        assert 0 < r["ms_min"] <= r["ms_median"]


def test_candidates_are_seeded_and_drawn_without_repeats(bench: ModuleType) -> None:
    items = syn.catalog()
    a, b = bench.candidate_texts(items, 30, 3), bench.candidate_texts(items, 30, 3)
    assert a == b and len(set(a)) == 30  # 40 items: no repeats needed
    assert len(bench.candidate_texts(items, 100, 3)) == 100  # more than the catalogue
