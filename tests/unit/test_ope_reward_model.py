"""Cross-fitted (item, slot) reward model: exact limits, empirical Bayes, out-of-fold use."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from abrec.errors import ConfigError, DataError
from abrec.ope.reward_model import (
    PRIOR_STRENGTH_RANGE,
    crossfit_item_slot_ctr,
    empirical_bayes_strength,
    item_slot_ctr,
)

N_ITEMS, N_SLOTS = 12, 3


def _pbm_log(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Position-based clicks: CTR(i, k) = attract_i * exam_k, uniform items and slots."""
    rng = np.random.default_rng(seed)
    attract = rng.uniform(0.05, 0.5, N_ITEMS)
    exam = np.array([1.0, 0.7, 0.5])
    a = rng.integers(0, N_ITEMS, n)
    k = rng.integers(0, N_SLOTS, n)
    r = (rng.random(n) < attract[a] * exam[k]).astype(float)
    return a, k, r, np.outer(attract, exam)


def test_zero_strength_is_the_raw_cell_mean() -> None:
    a, k, r, _ = _pbm_log(3000, 1)
    table = item_slot_ctr(a, k, r, N_ITEMS, N_SLOTS, prior_strength=0.0)
    for i in range(N_ITEMS):
        for s in range(N_SLOTS):
            rows = (a == i) & (k == s)
            assert table[i, s] == pytest.approx(r[rows].mean())


def test_huge_strength_is_the_position_based_prior() -> None:
    a, k, r, _ = _pbm_log(3000, 2)
    table = item_slot_ctr(a, k, r, N_ITEMS, N_SLOTS, prior_strength=1e12)
    np.testing.assert_allclose(table, r.mean(), rtol=1e-6)  # item and slot shrunk to g


def test_recovers_the_true_ctr_on_a_large_log() -> None:
    a, k, r, truth = _pbm_log(200_000, 3)
    table = item_slot_ctr(a, k, r, N_ITEMS, N_SLOTS)
    se = np.sqrt(truth * (1 - truth) / (200_000 / (N_ITEMS * N_SLOTS)))
    assert np.abs(table - truth).max() < 4 * se.max()


def test_empirical_bayes_maximises_the_beta_binomial_likelihood() -> None:
    rng = np.random.default_rng(4)
    m_true, g = 200.0, 0.05
    p = rng.beta(m_true * g, m_true * (1 - g), 400)
    n = rng.integers(50, 500, 400)
    c = rng.binomial(n, p)
    m = empirical_bayes_strength(c, n)
    gh = c.sum() / n.sum()
    grid = np.exp(np.linspace(np.log(1.0), np.log(1e7), 4001))
    ll = [sps.betabinom.logpmf(c, n, mm * gh, mm * (1 - gh)).sum() for mm in grid]
    best = grid[int(np.argmax(ll))]
    assert m == pytest.approx(best, rel=0.01)
    assert 100 < m < 400  # and near the truth
    # no over-dispersion at all (every unit has the same rate) -> complete pooling
    c_flat = rng.binomial(n, 0.05)
    assert empirical_bayes_strength(c_flat, n) > 1e4
    assert empirical_bayes_strength(np.zeros(5), np.full(5, 10)) == PRIOR_STRENGTH_RANGE[1]


def test_cross_fitting_is_out_of_fold() -> None:
    a, k, r, _ = _pbm_log(6000, 5)
    rounds = np.arange(a.size) // 3  # three slots per round
    cf = crossfit_item_slot_ctr(a, k, r, N_ITEMS, N_SLOTS, rounds=rounds, n_folds=4, seed=1)
    assert set(np.unique(cf.folds)) == {0, 1, 2, 3}
    # whole rounds in one fold
    assert (cf.folds.reshape(-1, 3) == cf.folds.reshape(-1, 3)[:, :1]).all()
    for f in range(4):
        train = cf.folds != f
        ref = item_slot_ctr(
            a[train], k[train], r[train], N_ITEMS, N_SLOTS, prior_strength=cf.prior_strength[f]
        )
        np.testing.assert_allclose(cf.tables[f], ref)
    q = cf.q_logged(a, k)
    np.testing.assert_allclose(q, cf.tables[cf.folds, a, k])
    # a row's own reward never enters its prediction
    r2 = r.copy()
    r2[0] = 1.0 - r2[0]
    cf2 = crossfit_item_slot_ctr(
        a, k, r2, N_ITEMS, N_SLOTS, rounds=rounds, n_folds=4, seed=1, prior_strength=50.0
    )
    cf1 = crossfit_item_slot_ctr(
        a, k, r, N_ITEMS, N_SLOTS, rounds=rounds, n_folds=4, seed=1, prior_strength=50.0
    )
    assert cf2.q_logged(a, k)[0] == cf1.q_logged(a, k)[0]
    assert not np.array_equal(cf2.q_logged(a, k), cf1.q_logged(a, k))
    # direct-method value of each row: sum_a pi(a | k) q(a, k)
    pi = np.random.default_rng(0).dirichlet(np.ones(N_ITEMS), size=N_SLOTS).T
    ref = np.array([cf.tables[f, :, s] @ pi[:, s] for f, s in zip(cf.folds, k, strict=True)])
    np.testing.assert_allclose(cf.q_policy(k, pi), ref)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"actions": np.array([0, 99])}, DataError, "actions must lie"),
        ({"positions": np.array([0.5, 1.0])}, DataError, "integer"),
        ({"rewards": np.array([1.0])}, DataError, "same length"),
        ({"n_folds": 1}, ConfigError, "n_folds"),
        ({"n_folds": 3}, DataError, "cannot be split"),
        ({"prior_strength": -1.0}, ConfigError, "prior_strength"),
    ],
)
def test_bad_input(kwargs: dict, error: type[Exception], match: str) -> None:
    args = {
        "actions": np.array([0, 1]),
        "positions": np.array([0, 1]),
        "rewards": np.array([1.0, 0.0]),
        "n_items": 2,
        "n_slots": 2,
        "n_folds": 2,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        crossfit_item_slot_ctr(**args)


def test_hand_computed_shrinkage() -> None:
    """Four rows, m = 2: every level of the formula by hand."""
    a = np.array([0, 0, 1, 1])
    k = np.array([0, 1, 0, 0])
    r = np.array([1.0, 0.0, 1.0, 0.0])
    q = item_slot_ctr(a, k, r, 2, 2, prior_strength=2.0)
    g = 0.5
    s0, s1 = (2 + 2 * g) / (3 + 2) / g, (0 + 2 * g) / (1 + 2) / g  # slot factors 1.2, 2/3
    a0, a1 = (1 + 2 * g) / (2 + 2), (1 + 2 * g) / (2 + 2)  # item rates 0.5, 0.5
    expected = np.array(
        [
            [(1 + 2 * a0 * s0) / (1 + 2), (0 + 2 * a0 * s1) / (1 + 2)],
            [(1 + 2 * a1 * s0) / (2 + 2), (0 + 2 * a1 * s1) / (0 + 2)],  # (1, 1) unseen
        ]
    )
    np.testing.assert_allclose(q, expected)
