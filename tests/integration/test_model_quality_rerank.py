"""Learned re-ranker quality on protocol ml-small-temporal-v1 (slow; needs ABREC_DATA).

The re-rankers learn their weights inside `fit` on a temporal validation split carved from
the protocol's training data, so the test set is touched once, here.
Measured: EASE 0.1023, ltr_cf 0.1125 (paired t p = 1.4e-4 vs EASE), ltr 0.1153
(p = 4.7e-5 vs EASE); ltr vs ltr_cf +0.0028, p = 0.21 (not significant).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from abrec.data import ProtocolSplit
from abrec.evaluation.metrics import ndcg_at_k
from abrec.evaluation.significance import paired_ttest
from abrec.models import build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(ml_small, ml_small_split: ProtocolSplit) -> dict[str, np.ndarray]:
    from abrec.embed import TextEncoder

    encoder = TextEncoder(show_progress=False)
    users = ml_small_split.scored_users
    out = {}
    for kind in ("ease", "ltr_cf", "ltr"):
        params = {"encoder": encoder} if kind == "ltr" else {}
        start = time.perf_counter()
        model = build_model(kind, **params).fit(ml_small_split.train, ml_small.items)
        fit_s = time.perf_counter() - start
        top, _ = model.recommend(users, k=10, exclude_seen=True)
        out[kind] = ndcg_at_k(top, ml_small_split.relevant[users], 10)
        print(f"{kind}: ndcg@10 {out[kind].mean():.4f} (fit {fit_s:.1f} s)")
    return out


def _p(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.ravel(paired_ttest(a, b).p_value)[0])


def test_cf_reranker_beats_ease_significantly(results) -> None:
    ease, ltr_cf = results["ease"], results["ltr_cf"]
    assert len(ease) == 592
    assert 0.095 <= ease.mean() <= 0.11
    assert ltr_cf.mean() > ease.mean()
    assert _p(ltr_cf, ease) < 0.05


def test_lm_reranker_reference_point(results) -> None:
    ltr = results["ltr"]
    assert ltr.mean() >= 0.105
    assert ltr.mean() > results["ease"].mean() and _p(ltr, results["ease"]) < 0.05


def test_lm_over_cf_reranker_is_not_required_to_be_significant(results) -> None:
    """Honest result: the language model adds ~+0.003 over the CF re-ranker, p ~ 0.2.

    Only a loose bound is asserted: the LM re-ranker is not significantly worse.
    """
    ltr, ltr_cf = results["ltr"], results["ltr_cf"]
    diff = float((ltr - ltr_cf).mean())
    p = _p(ltr, ltr_cf)
    print(f"ltr - ltr_cf: {diff:+.4f} (paired t-test p = {p:.2g})")
    assert diff > -0.005
    assert not (diff < 0 and p < 0.05)
