"""The two-tower recommender: anchor-text user vectors, fine-tuning inside fit, the tuned cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import train_synthetic as syn
from model_conformance import HashingEncoder, RecommenderConformance, synthetic_data

from abrec.errors import ConfigError
from abrec.models import build_model
from abrec.models.base import Recommender
from abrec.models.two_tower import TwoTower

TINY_FINETUNE: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 8,
    "learning_rate": 1e-4,
    "warmup_ratio": 0.0,
    "max_examples_per_user": 3,
    "n_negatives": 20,
    "max_seq_length": 32,
    "patience": None,
    "device": "cpu",
    "freeze_layers": 1,
}


class TestTwoTower(RecommenderConformance):
    def make_model(self) -> Recommender:
        return TwoTower(history_len=3, encoder=HashingEncoder())

    def make_history_model(self) -> Recommender | None:
        return None  # a known user's vector reads the order of likes; a history has none


def _reference_anchor(inter: Any, titles: list[str], u: int, n: int, threshold: float) -> str:
    """Titles of u's last n liked items by (timestamp, external id), oldest first."""
    rows = np.flatnonzero((inter.user_idx == u) & (inter.ratings >= threshold))
    if len(rows) == 0:
        rows = np.flatnonzero(inter.user_idx == u)
    key = sorted(rows, key=lambda r: (inter.timestamps[r], inter.item_ids[inter.item_idx[r]]))
    return "; ".join(titles[inter.item_idx[r]] for r in key[-n:])


def test_scores_are_the_cosine_of_anchor_and_item_vectors() -> None:
    inter, items = synthetic_data()
    enc = HashingEncoder()
    model = TwoTower(history_len=3, encoder=enc).fit(inter, items)
    texts = [str(t) for t in items.text]
    E = enc.encode(texts).astype(np.float64)
    for u in (0, 5, 11):
        a = enc.encode([_reference_anchor(inter, texts, u, 3, 4.0)])[0].astype(np.float64)
        np.testing.assert_allclose(model.score(np.array([u]))[0], E @ a, rtol=1e-5, atol=1e-6)


def test_history_scores_use_the_mean_title_vector() -> None:
    inter, items = synthetic_data()
    enc = HashingEncoder()
    model = TwoTower(encoder=enc).fit(inter, items)
    E = enc.encode([str(t) for t in items.text]).astype(np.float64)
    hist = np.array([2, 9, 30])
    prof = E[hist].mean(0)
    np.testing.assert_allclose(
        model.score_history([hist])[0], E @ (prof / np.linalg.norm(prof)), rtol=1e-5, atol=1e-6
    )


def test_finetune_keys_owned_by_the_model_are_rejected() -> None:
    with pytest.raises(ConfigError, match="history_len"):
        build_model("two_tower", finetune={"history_len": 3})
    with pytest.raises(ConfigError, match="learning_rate"):
        build_model("two_tower", finetune={"learning_rate": -1.0})


def test_finetune_trains_on_fit_data_once_then_reuses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fit fine-tunes on the given training data (validation carved from it); a second fit on
    the same data reuses the cached encoder; other data trains anew."""
    import abrec.train.run as train_run

    calls: list[int] = []
    real = train_run.train_encoder

    def counting(train: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(train))
        assert kwargs["protocol"] == "random"
        return real(train, *args, **kwargs)

    monkeypatch.setattr(train_run, "train_encoder", counting)
    split, items = syn.split(), syn.catalog()
    params = {
        "finetune": TINY_FINETUNE,
        "cache_dir": str(tmp_path),
        "validation": "random",
        "seed": 3,
        "history_len": 3,
    }
    from abrec.models.tuning import tuned_encoder_cached

    model = build_model("two_tower", **params)
    assert not tuned_encoder_cached(model.get_config(), split.train, items, "two_tower")
    first = model.fit(split.train, items)
    assert calls == [len(split.train)]
    assert tuned_encoder_cached(model.get_config(), split.train, items, "two_tower")
    report = first.training_report  # type: ignore[attr-defined]
    assert [h["epoch"] for h in report["history"]] == [0, 1]
    assert report["config"]["history_len"] == 3 and report["config"]["seed"] == 3
    again = build_model("two_tower", **params).fit(split.train, items)
    assert calls == [len(split.train)]  # cached: no second training
    users = np.arange(split.train.n_users)
    np.testing.assert_array_equal(first.score(users), again.score(users))
    fewer = split.train.subset(np.arange(len(split.train)) % 7 != 0)
    build_model("two_tower", **params).fit(fewer, items)
    assert calls == [len(split.train), len(fewer)]
    untuned = build_model("two_tower", history_len=3).fit(split.train, items)
    assert not np.allclose(first.score(users), untuned.score(users), atol=1e-4)
