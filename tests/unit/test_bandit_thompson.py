"""Thompson-sampling allocation against exact references: Evan Miller's closed form for two
arms, numerical integration for three, a root-finding definition of the min-share floor."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import integrate, optimize, special
from scipy import stats as sps

from abrec.bandit import BanditSettings, apply_min_share, in_burn_in, prob_best, thompson_weights
from abrec.errors import ConfigError, DataError

DRAWS = 200_000


def miller_b_beats_a(a_a: float, b_a: float, a_b: int, b_b: float) -> float:
    """P(theta_B > theta_A), theta ~ Beta, exact for integer a_b (Evan Miller, 2015).

    sum_{i=0}^{a_b-1} B(a_a+i, b_a+b_b) / ((b_b+i) B(1+i, b_b) B(a_a, b_a)).
    """
    i = np.arange(a_b)
    log_terms = (
        special.betaln(a_a + i, b_a + b_b)
        - np.log(b_b + i)
        - special.betaln(1 + i, b_b)
        - special.betaln(a_a, b_a)
    )
    return float(np.exp(log_terms).sum())


def quad_prob_best(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(arm k is the largest) = int f_k(x) prod_{j != k} F_j(x) dx by adaptive quadrature."""
    out = []
    for k in range(a.size):
        others = [j for j in range(a.size) if j != k]

        def integrand(x: float, k: int = k, others: list[int] = others) -> float:
            dens = float(sps.beta.pdf(x, a[k], b[k]))
            return dens * math.prod(float(sps.beta.cdf(x, a[j], b[j])) for j in others)

        lo, hi = sps.beta.ppf([1e-12, 1 - 1e-12], a[k], b[k])
        val, _ = integrate.quad(integrand, lo, hi, epsabs=1e-12, epsrel=1e-10, limit=200)
        out.append(val)
    return np.array(out)


def within_mc(estimate: np.ndarray, truth: np.ndarray, draws: int, z: float = 4.0) -> None:
    se = np.sqrt(np.maximum(truth * (1 - truth), 1e-12) / draws)
    assert np.all(np.abs(estimate - truth) <= z * se + 1e-12), (estimate, truth, se)


# ---------------------------------------------------------------- P(best) ------------------


def test_miller_formula_matches_quadrature() -> None:
    """The reference itself: the closed form equals numerical integration."""
    exact = miller_b_beats_a(1 + 40, 1 + 960, 1 + 55, 1 + 945)
    numeric = quad_prob_best(np.array([41.0, 56.0]), np.array([961.0, 946.0]))[1]
    assert exact == pytest.approx(numeric, abs=1e-9)


@pytest.mark.parametrize(
    ("successes", "trials", "prior"),
    [
        ((40, 55), (1000, 1000), (1.0, 1.0)),  # B clearly better, P ~ 0.94
        ((50, 52), (1000, 1000), (1.0, 1.0)),  # near coin flip
        ((3, 9), (40, 200), (2.0, 5.0)),  # unequal sizes, informative prior
        ((30, 20), (300, 300), (1.0, 1.0)),  # A better: P(B best) small
    ],
)
def test_two_arm_prob_best_matches_closed_form(
    successes: tuple[int, int], trials: tuple[int, int], prior: tuple[float, float]
) -> None:
    pa, pb = prior
    s, t = np.array(successes), np.array(trials)
    a, b = pa + s, pb + t - s
    exact_b = miller_b_beats_a(a[0], b[0], int(a[1]), b[1])
    got = prob_best(s, t, prior_alpha=pa, prior_beta=pb, draws=DRAWS, rng=5)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)
    within_mc(got, np.array([1 - exact_b, exact_b]), DRAWS)


def test_three_arm_prob_best_matches_numerical_integration() -> None:
    s, t = np.array([50, 60, 80]), np.array([1000, 1000, 1000])
    truth = quad_prob_best(1.0 + s, 1.0 + t - s)
    assert truth.sum() == pytest.approx(1.0, abs=1e-7)
    got = prob_best(s, t, draws=DRAWS, rng=11)
    within_mc(got, truth, DRAWS)
    # informative prior, unequal arms: catches a swapped alpha/beta
    s2, t2 = np.array([4, 7, 2]), np.array([30, 60, 10])
    truth2 = quad_prob_best(3.0 + s2, 4.0 + t2 - s2)
    within_mc(prob_best(s2, t2, prior_alpha=3.0, prior_beta=4.0, draws=DRAWS, rng=1), truth2, DRAWS)


def test_prob_best_batches_rows_independently() -> None:
    s = np.array([[40, 55], [55, 40]])
    t = np.full((2, 2), 1000)
    got = prob_best(s, t, draws=DRAWS, rng=3)
    exact = miller_b_beats_a(41, 961, 56, 946)
    within_mc(got[0], np.array([1 - exact, exact]), DRAWS)
    within_mc(got[1], np.array([exact, 1 - exact]), DRAWS)


# ---------------------------------------------------------------- min-share floor -----------


def floor_by_root(p: np.ndarray, m: float) -> np.ndarray:
    """The floored weights by definition: w_k = max(m, c p_k) with c solving sum w = 1."""
    c = optimize.brentq(lambda c: np.maximum(m, c * p).sum() - 1.0, 0.0, 1.0 / p.max(), xtol=1e-15)
    return np.maximum(m, c * p)


def test_min_share_floor_matches_its_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 12))
        p = rng.dirichlet(np.full(k, 0.3))
        m = float(rng.uniform(0.0, 1.0 / k))
        w = apply_min_share(p, m)
        np.testing.assert_allclose(w, floor_by_root(p, m), atol=1e-12)
        assert w.min() >= m  # exactly, no tolerance
        assert abs(w.sum() - 1.0) <= 1e-12


def test_min_share_cascade_and_edge_cases() -> None:
    # flooring arm 2 pushes arm 1 below the floor as well
    np.testing.assert_allclose(apply_min_share([0.7, 0.21, 0.09], 0.2), [0.6, 0.2, 0.2])
    np.testing.assert_allclose(apply_min_share([7, 2, 1], 0.0), [0.7, 0.2, 0.1], atol=1e-15)
    np.testing.assert_array_equal(apply_min_share([0.9, 0.05, 0.05], 1 / 3), np.full(3, 1 / 3))
    np.testing.assert_array_equal(apply_min_share([1.0, 0.0, 0.0, 0.0], 0.25), np.full(4, 0.25))
    two_d = apply_min_share([[0.98, 0.02], [0.5, 0.5]], 0.1)
    np.testing.assert_allclose(two_d, [[0.9, 0.1], [0.5, 0.5]])


# ---------------------------------------------------------------- thompson_weights ----------

SETTINGS = BanditSettings(min_share=0.05, burn_in=100, draws=20_000)


def test_weights_are_floored_prob_best_and_sum_to_one() -> None:
    s, t = np.array([40, 50, 90]), np.array([1000, 1000, 1000])
    w = thompson_weights(s, t, t, SETTINGS, np.random.default_rng(4))
    p = prob_best(s, t, draws=SETTINGS.draws, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(w, apply_min_share(p, 0.05))
    assert w.min() >= 0.05 and abs(w.sum() - 1.0) <= 1e-12
    assert w[0] == 0.05 and w[2] > 0.85  # arm 0 is floored, arm 2 is almost surely best


def test_burn_in_gives_equal_weights_until_every_arm_has_enough_units() -> None:
    s, t = np.array([5, 50, 90]), np.array([1000, 1000, 1000])
    units = np.array([99, 500, 500])
    np.testing.assert_array_equal(thompson_weights(s, t, units, SETTINGS, 0), np.full(3, 1 / 3))
    assert in_burn_in(units, SETTINGS)
    w = thompson_weights(s, t, units + 1, SETTINGS, 0)
    assert not in_burn_in(units + 1, SETTINGS) and w[2] > 0.85
    batch = thompson_weights(
        np.stack([s, s]), np.stack([t, t]), np.stack([units, units + 1]), SETTINGS, 0
    )
    np.testing.assert_array_equal(batch[0], np.full(3, 1 / 3))
    assert batch[1, 2] > 0.85
    np.testing.assert_array_equal(in_burn_in(np.stack([units, units + 1]), SETTINGS), [True, False])


def test_weights_are_reproducible_with_a_seed() -> None:
    s, t = np.array([50, 52]), np.array([1000, 1000])
    a = thompson_weights(s, t, t, SETTINGS, 7)
    assert np.array_equal(a, thompson_weights(s, t, t, SETTINGS, np.random.default_rng(7)))
    assert not np.array_equal(a, thompson_weights(s, t, t, SETTINGS, 8))


@pytest.mark.parametrize(
    ("successes", "trials", "units", "match"),
    [
        ([-1, 5], [10, 10], [10, 10], "non-negative integer"),
        ([1.5, 5], [10, 10], [10, 10], "non-negative integer"),
        ([1, math.nan], [10, 10], [10, 10], "non-negative integer"),
        ([11, 5], [10, 10], [10, 10], "successes exceed trials"),
        ([1, 5, 3], [10, 10], [10, 10], "same shape"),
        ([1, 5], [10, 10], [10, 10, 10], "same shape"),
        ([1], [10], [10], "at least 2 arms"),
        ([[[1, 2]]], [[[3, 4]]], [[[5, 6]]], "1-d"),
    ],
)
def test_bad_counts_raise_clear_errors(
    successes: object, trials: object, units: object, match: str
) -> None:
    with pytest.raises(DataError, match=match):
        thompson_weights(successes, trials, units, SETTINGS, 0)  # type: ignore[arg-type]


def test_min_share_too_large_for_the_arms_is_a_config_error() -> None:
    settings = BanditSettings(min_share=0.3)
    with pytest.raises(ConfigError, match=r"min_share=0.3 is impossible for 4 arms"):
        thompson_weights([1, 2, 3, 4], [10] * 4, [100] * 4, settings, 0)
    thompson_weights([1, 2, 3], [10] * 3, [100] * 3, settings, 0)  # 0.9 <= 1 is fine
    BanditSettings(min_share=0.1).check_arms(10)  # 0.1 * 10 rounds to exactly 1
    with pytest.raises(ConfigError, match="numpy Generator or an integer seed"):
        thompson_weights([1, 2], [10, 10], [100, 100], settings, "seed")  # type: ignore[arg-type]


# ---------------------------------------------------------------- settings ------------------


def test_settings_defaults_and_round_trips() -> None:
    d = BanditSettings()
    assert (d.min_share, d.burn_in, d.update_every_s, d.draws) == (0.05, 100, 10.0, 10_000)
    assert (d.prior_alpha, d.prior_beta) == (1.0, 1.0)
    custom = BanditSettings(
        min_share=0.1, burn_in=250, update_every_s=2.5, draws=5000, prior_beta=9.0
    )
    assert BanditSettings.from_toml(custom.to_toml()) == custom
    assert BanditSettings.from_json(custom.to_json()) == custom
    assert (
        BanditSettings.from_json(json.dumps({"min_share": 0, "update_every_s": 5})).min_share == 0.0
    )
    with pytest.raises(ValidationError):
        custom.min_share = 0.2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"burn_in": 99}, "burn_in"),
        ({"min_share": -0.01}, "min_share"),
        ({"min_share": 0.6}, "min_share"),
        ({"update_every_s": 0}, "update_every_s"),
        ({"draws": 10}, "draws"),
        ({"prior_alpha": 0}, "prior_alpha"),
        ({"min_shares": 0.1}, "min_shares: unknown key"),
        ({"burn_in": "100"}, "burn_in"),
    ],
)
def test_bad_settings_raise_config_errors_naming_the_key(
    table: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        BanditSettings.from_mapping(table)


def test_bad_settings_text() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        BanditSettings.from_toml("min_share = ")
    with pytest.raises(ConfigError, match="JSON object"):
        BanditSettings.from_json("[1]")
    with pytest.raises(ConfigError, match="at least 2 arms"):
        BanditSettings().check_arms(1)
