"""Unit-level click simulations: A/A false-positive rate and A/B power of interleaving.

Each run has `UNITS` users with 1-4 impressions each; every impression is a team-draft merge
drawn by its exact probability (`enumerate_outcomes`), clicks come from the position-based
`ClickModel` with random per-user attractiveness (random held-out ratings), credit is the
library's rule, and each run ends in one sign test. Vectorised across runs.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from abrec.interleave import credit, enumerate_outcomes, sign_test_pvalues
from abrec.simulate.click_model import ClickModel

RUNS, UNITS, MAX_IMPS, N_ITEMS, K = 3000, 200, 4, 20, 10
CHUNK = 500
CM = ClickModel()


def _simulate(
    rankings: dict[str, list[str]], ratings_fn: object, seed: int
) -> dict[str, np.ndarray]:
    """Wins, losses and ties of B over A per run (the library's credit on every impression)."""
    assert callable(ratings_fn)
    outs = enumerate_outcomes("team_draft", rankings, K)
    assert outs is not None
    probs = np.array([o.probability for o in outs])
    item_ix = np.array([[int(i[1:]) for i in o.items] for o in outs])  # (O, K)
    is_b = np.array([[s == "B" for s in o.sources] for o in outs])
    # the library's credit rule on each outcome's sources: clicking only position p credits team
    for o, row in zip(outs, is_b, strict=True):
        for p in range(K):
            c = credit("team_draft", ["A", "B"], o.sources, np.arange(K) == p)
            assert c["B"] == float(row[p]) and c["A"] == float(not row[p])
    rng = np.random.default_rng(seed)
    wins, losses = np.zeros(RUNS, np.int64), np.zeros(RUNS, np.int64)
    for start in range(0, RUNS, CHUNK):
        shape = (CHUNK, UNITS)
        ratings = ratings_fn(rng, (*shape, N_ITEMS))  # per-user relevance of every item
        n_imps = rng.integers(1, MAX_IMPS + 1, size=shape)
        pick = rng.choice(len(outs), p=probs, size=(*shape, MAX_IMPS))
        shown = np.take_along_axis(ratings[:, :, None, :], item_ix[pick], axis=-1)  # (R,U,I,K)
        prob = CM.click_probability(np.arange(K), shown)
        live = (np.arange(MAX_IMPS) < n_imps[..., None])[..., None]
        clicks = (rng.random(prob.shape) < prob) & live
        cb = np.sum(clicks & is_b[pick], axis=(2, 3))
        ca = np.sum(clicks & ~is_b[pick], axis=(2, 3))
        wins[start : start + CHUNK] = np.sum(cb > ca, axis=1)
        losses[start : start + CHUNK] = np.sum(cb < ca, axis=1)
    return {"wins": wins, "losses": losses, "ties": UNITS - wins - losses}


def _check_size(res: dict[str, np.ndarray]) -> float:
    """FPR at alpha 0.05 in the brief's band, and equal to the exact test's own size given
    each run's number of non-tied units (the exact sign test is conservative) within 4 SE."""
    rejected = sign_test_pvalues(res["wins"], res["losses"]) < 0.05
    fpr = float(np.mean(rejected))
    n = res["wins"] + res["losses"]
    w = np.arange(n.max() + 1)
    size = np.array(
        [
            stats.binom.pmf(w[: m + 1], m, 0.5)[
                sign_test_pvalues(w[: m + 1], m - w[: m + 1]) < 0.05
            ].sum()
            for m in range(n.max() + 1)
        ]
    )
    expected = float(size[n].mean())
    assert abs(fpr - expected) <= 4 * np.sqrt(expected * (1 - expected) / RUNS), (fpr, expected)
    assert 0.035 <= fpr <= 0.065, fpr
    return fpr


def _random_ratings(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """40% of items rated by the user, ratings uniform on 0.5..5 (MovieLens scale)."""
    r = rng.integers(1, 11, size=shape) / 2.0
    return np.where(rng.random(shape) < 0.4, r, np.nan)


def test_aa_same_ranker_false_positive_rate() -> None:
    """A and B are the same list: only the coin decides the teams. FPR in [3.5%, 6.5%]."""
    same = [f"i{j}" for j in range(N_ITEMS)]
    res = _simulate({"A": same, "B": same}, _random_ratings, seed=1)
    _check_size(res)
    tie_share = float(res["ties"].mean() / UNITS)
    assert 0.2 < tie_share < 0.8  # ties are the units without a click or with equal credit


def test_aa_two_different_rankers_of_equal_quality() -> None:
    """Two different orders of exchangeable items: equal quality, so still an A/A."""
    rng = np.random.default_rng(9)
    a = [f"i{j}" for j in rng.permutation(N_ITEMS)]
    b = [f"i{j}" for j in rng.permutation(N_ITEMS)]
    res = _simulate({"A": a, "B": b}, _random_ratings, seed=2)
    _check_size(res)


def test_clearly_better_ranker_wins_with_high_power() -> None:
    """B ranks the items by their (shared) quality, A in reverse: B should win nearly always."""

    def graded(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        base = np.linspace(5.0, 1.0, shape[-1])  # item i0 is best
        noisy = np.clip(base + rng.normal(0, 1.0, shape), 0.5, 5.0)
        return np.where(rng.random(shape) < 0.5, np.round(noisy * 2) / 2, np.nan)

    items = [f"i{j}" for j in range(N_ITEMS)]
    res = _simulate({"A": items[::-1], "B": items}, graded, seed=3)
    p = sign_test_pvalues(res["wins"], res["losses"])
    assert float(np.mean((p < 0.05) & (res["wins"] > res["losses"]))) > 0.95
