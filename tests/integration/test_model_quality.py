"""Quality on protocol ml-small-temporal-v1 with the real MiniLM encoder (slow; needs ABREC_DATA)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from abrec.data import ProtocolSplit
from abrec.evaluation.metrics import ndcg_at_k
from abrec.models import build_model
from abrec.models.base import Recommender

pytestmark = pytest.mark.slow


def _ndcg10(model: Recommender, split: ProtocolSplit) -> tuple[np.ndarray, np.ndarray]:
    """Per scored user NDCG@10 on all relevant items and on the cold-item slice (NaN: none)."""
    users = split.scored_users
    top, _ = model.recommend(users, k=10, exclude_seen=True)
    full = ndcg_at_k(top, split.relevant[users], 10)
    cold = ndcg_at_k(top, split.cold_relevant()[users], 10)
    return full, cold


@pytest.fixture(scope="module")
def results(ml_small, ml_small_split) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from abrec.embed import TextEncoder

    encoder = TextEncoder(show_progress=False)
    out = {}
    for name in ("ease", "lm", "hybrid"):
        params = {"encoder": encoder} if name != "ease" else {}
        model = build_model(name, **params).fit(ml_small_split.train, ml_small.items)
        out[name] = _ndcg10(model, ml_small_split)
    for name, (full, cold) in out.items():
        print(f"{name}: ndcg@10 {full.mean():.4f} cold-slice {np.nanmean(cold):.4f}")
    return out


def test_ease_reference_point(results) -> None:
    full, cold = results["ease"]
    assert len(full) == 592
    assert 0.095 <= full.mean() <= 0.11
    assert np.nanmean(cold) == 0.0  # no collaborative signal for items unseen in training


def test_language_models_lead_on_cold_items(results) -> None:
    ease_cold = np.nanmean(results["ease"][1])
    assert np.nanmean(results["hybrid"][1]) > ease_cold
    assert np.nanmean(results["lm"][1]) > ease_cold


def test_hybrid_matches_ease_on_all_items(results) -> None:
    """Honest result: the tuned hybrid is on par with EASE, not significantly better.

    Measured: hybrid 0.1014 vs EASE 0.1023 NDCG@10 (paired t-test p = 0.61). Tuned on a
    validation split of train it gained +0.004 (p = 0.015) there, which did not carry over
    to the test period. Assert non-inferiority within 0.005 and no significant loss.
    """
    hybrid, ease = results["hybrid"][0], results["ease"][0]
    assert hybrid.mean() >= ease.mean() - 0.005
    test = scipy.stats.ttest_rel(hybrid, ease)
    assert not (test.pvalue < 0.05 and hybrid.mean() < ease.mean())
