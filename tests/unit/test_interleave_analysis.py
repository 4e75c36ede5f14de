"""Interleaving statistics against scipy, numerical integration and simulations with known truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from abrec.interleave import (
    Impression,
    always_valid_pvalues,
    analyze_interleaving,
    preference_test,
    prior_a,
    sign_test_pvalues,
    win_share_sequence,
)
from abrec.interleave.sequential import log_lambda
from abrec.stats.errors import NotTestableError, StatsInputError
from abrec.stats.multiple import holm


def test_sign_test_matches_scipy_binomtest() -> None:
    for w in range(0, 40, 3):
        for lo in range(0, 40, 4):
            ref = 1.0 if w + lo == 0 else stats.binomtest(w, w + lo, 0.5).pvalue
            assert float(sign_test_pvalues(w, lo)) == pytest.approx(ref, rel=1e-9, abs=1e-15)
    assert sign_test_pvalues([500, 510], [450, 510]).shape == (2,)


def test_log_lambda_equals_numerical_mixture_integral() -> None:
    for s, f, a, p0 in [(7, 3, 2.0, 0.5), (30, 41, 10.0, 0.5), (12, 2, 0.7, 0.3), (0, 5, 3.0, 0.5)]:
        num, _ = integrate.quad(
            lambda p, s=s, f=f, a=a: p**s * (1 - p) ** f * stats.beta.pdf(p, a, a),
            0,
            1,
            epsabs=0,
            epsrel=1e-11,
        )
        ref = math.log(num) - (s * math.log(p0) + f * math.log(1 - p0))
        assert float(log_lambda(s, f, a, p0)) == pytest.approx(ref, rel=1e-8)


def test_prior_a_matches_the_normal_mixture_variance() -> None:
    from abrec.stats.sequential import optimal_rho

    rho = optimal_rho(1000, 0.05)
    a = prior_a(1000, 0.05)
    assert stats.beta(a, a).var() == pytest.approx(rho**2 / 4, rel=1e-12)


def test_always_valid_pvalue_controls_fpr_under_peeking_after_every_unit() -> None:
    """H0 (win share 1/2, 30% ties), a look after every one of 1500 units, 2000 runs."""
    rng = np.random.default_rng(2024)
    runs, units, alpha = 2000, 1500, 0.05
    u = rng.random((runs, units))
    x = np.where(u < 0.3, 0, np.where(u < 0.65, 1, -1))
    p = always_valid_pvalues(x, prior_a(1000, alpha))
    fpr = float(np.mean(p.min(axis=1) <= alpha))
    assert fpr <= alpha
    assert fpr >= 0.005  # not vacuous
    # the naive fixed-horizon sign test, peeked at every 10 units, is far above alpha
    wins, losses = np.cumsum(x == 1, axis=1)[:, 9::10], np.cumsum(x == -1, axis=1)[:, 9::10]
    naive = float(np.mean(sign_test_pvalues(wins, losses).min(axis=1) <= alpha))
    assert naive > 2 * alpha
    assert np.all(np.diff(p, axis=1) <= 0)  # running minimum


def test_win_share_confidence_sequence_covers_uniformly_over_time() -> None:
    rng = np.random.default_rng(7)
    runs, n, p_true, alpha, a = 2000, 800, 0.62, 0.05, prior_a(500)
    win = rng.random((runs, n)) < p_true
    s = np.cumsum(win, axis=1)
    f = np.arange(1, n + 1) - s
    miss = np.any(log_lambda(s, f, a, p_true) >= math.log(1 / alpha), axis=1)
    assert float(miss.mean()) <= alpha
    low, high = win_share_sequence(int(s[0, -1]), int(f[0, -1]), a, alpha)
    assert low < s[0, -1] / n < high
    for end in (low, high):  # the ends are where the mixture ratio crosses 1/alpha
        assert float(log_lambda(s[0, -1], f[0, -1], a, end)) == pytest.approx(
            math.log(20), abs=1e-6
        )
    assert win_share_sequence(0, 0, a, alpha) == (0.0, 1.0)


def test_preference_and_bootstrap_ci() -> None:
    rng = np.random.default_rng(3)
    x = rng.choice([-1, 0, 1], p=[0.3, 0.3, 0.4], size=3000)
    r = preference_test(x, alpha=0.05, seed=1)
    w, lo = int((x == 1).sum()), int((x == -1).sum())
    assert (r.wins, r.losses, r.ties) == (w, lo, 3000 - w - lo)
    assert r.preference.estimate == pytest.approx((w - lo) / 3000, abs=1e-15)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)  # normal-theory reference
    assert r.preference.low == pytest.approx(r.preference.estimate - half, abs=0.1 * half)
    assert r.preference.high == pytest.approx(r.preference.estimate + half, abs=0.1 * half)
    assert r.p_value == pytest.approx(stats.binomtest(w, w + lo).pvalue, rel=1e-9)
    assert r.win_share == pytest.approx(w / (w + lo))
    assert r.sequential.win_share.contains(r.win_share)
    assert r.significant and r.sequential.decision == "reject"


def test_analyze_multileave_pairs_are_holm_adjusted() -> None:
    rng = np.random.default_rng(5)
    names = ["A", "B", "C"]
    imps = []
    for u in range(300):
        for _ in range(2):
            src = list(rng.permutation(names))
            clicked = [bool(rng.random() < {"A": 0.2, "B": 0.3, "C": 0.2}[s]) for s in src]
            imps.append(Impression(f"u{u}", src, clicked))
    res = analyze_interleaving("multileave", names, imps, seed=0)
    assert res.n_units == 300 and res.n_impressions == 600
    assert [(p.control, p.treatment) for p in res.pairs] == [("A", "B"), ("A", "C"), ("B", "C")]
    np.testing.assert_allclose(
        [p.p_adjusted for p in res.pairs], holm([p.p_value for p in res.pairs])
    )
    assert res.primary is res.pairs[0]
    m = np.array(res.preference_matrix())
    np.testing.assert_allclose(m, -m.T)
    assert res.pairs[0].preference.estimate > 0 and res.pairs[2].preference.estimate < 0
    json.dumps(res.to_dict())  # JSON-safe
    assert res.to_dict()["primary"]["sequential"]["method"] == "beta-binomial-msprt"


def test_all_ties_and_too_little_data() -> None:
    imps = [Impression(f"u{i}", ["A", "B"], [False, False]) for i in range(5)]
    res = analyze_interleaving("team_draft", ["A", "B"], imps)
    assert res.primary.p_value == 1.0 and res.primary.ties == 5
    assert math.isnan(res.primary.win_share)
    assert res.to_dict()["primary"]["win_share"] is None
    assert any("tie" in n for n in res.notes)
    with pytest.raises(NotTestableError, match="at least 2 units"):
        analyze_interleaving("team_draft", ["A", "B"], imps[:1])
    with pytest.raises(StatsInputError, match=r"\+1"):
        preference_test([1, 2, 0])
    with pytest.raises(StatsInputError, match="non-negative"):
        sign_test_pvalues(-1, 3)
