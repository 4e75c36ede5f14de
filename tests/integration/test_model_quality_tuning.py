"""Re-derive the hybrid's default settings on a validation split of the TRAINING data only.

The test period of ml-small-temporal-v1 is never used: the training part is split again
temporally (last 20% of each user's training events = validation), the grid below is scored
there, and the rule "highest validation NDCG@10 among settings that still rank some cold items
in the top 10" must select the defaults shipped in `abrec.models.hybrid.Hybrid`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from abrec.data import protocol_split, temporal_user_split
from abrec.evaluation.metrics import ndcg_at_k
from abrec.models.hybrid import Hybrid, HybridConfig

pytestmark = pytest.mark.slow

HALF_LIVES = (5.0, 20.0)
LM_WEIGHTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
COLD_SHIFTS = (-1.5, -1.0, -0.75, -0.6, -0.5, -0.4)


@pytest.fixture(scope="module")
def grid(ml_small, ml_small_split) -> dict[tuple[float, float, float], tuple[float, float]]:
    from abrec.embed import TextEncoder

    inner_train, val = temporal_user_split(ml_small_split.train, 0.2)
    vsplit = protocol_split(inner_train, val)
    users = vsplit.scored_users
    rel, cold_rel = vsplit.relevant[users], vsplit.cold_relevant()[users]
    encoder = TextEncoder(show_progress=False)
    out = {}
    for half_life in HALF_LIVES:
        model = Hybrid(lm_params={"half_life": half_life}, encoder=encoder)
        model.fit(inner_train, ml_small.items)
        for w, shift in itertools.product(LM_WEIGHTS, COLD_SHIFTS):
            model.set_blend(lm_weight=w, cold_shift=shift)
            top, _ = model.recommend(users, k=10)
            full = float(ndcg_at_k(top, rel, 10).mean())
            cold = float(np.nanmean(ndcg_at_k(top, cold_rel, 10)))
            out[(half_life, w, shift)] = (full, cold)
    return out


def test_defaults_are_the_validation_choice(grid) -> None:
    eligible = {cfg: v for cfg, v in grid.items() if v[1] > 0}
    best = max(eligible, key=lambda cfg: eligible[cfg][0])
    print("validation choice", best, eligible[best])
    defaults = HybridConfig()
    assert best[1] == defaults.lm_weight
    assert best[2] == defaults.cold_shift
    assert defaults.lm_params.half_life == best[0]
