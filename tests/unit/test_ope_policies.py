"""BTS slot probabilities (Monte Carlo) against numerical integration; uniform policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from abrec.errors import ConfigError, DataError
from abrec.ope.policies import bts_action_dist, uniform_action_dist


def exact_slot_probability(alpha: np.ndarray, beta: np.ndarray, i: int, k: int) -> float:
    """P(theta_i is the (k+1)-th largest) = int f_i(x) P(exactly k others exceed x) dx.

    The count of other items above x is Poisson-binomial with success probabilities
    1 - F_j(x); its pmf comes from the product of (1 - q + q z) polynomials.
    """
    others = [j for j in range(alpha.size) if j != i]

    def integrand(x: float) -> float:
        pmf = np.array([1.0])
        for j in others:
            q = float(sps.beta.sf(x, alpha[j], beta[j]))
            pmf = np.convolve(pmf, [1.0 - q, q])
        return float(sps.beta.pdf(x, alpha[i], beta[i])) * pmf[k]

    value, _ = integrate.quad(integrand, 0.0, 1.0, limit=200, epsabs=1e-12)
    return float(value)


ALPHA = np.array([2.0, 3.0, 5.0, 1.5, 4.0])
BETA = np.array([6.0, 5.0, 9.0, 4.0, 4.0])
N_SIM = 200_000


@pytest.fixture(scope="module")
def mc() -> np.ndarray:
    return bts_action_dist(ALPHA, BETA, 3, n_sim=N_SIM, seed=11)


def test_two_items_closed_form() -> None:
    """P(theta_0 > theta_1) by quadrature: int f_0(x) F_1(x) dx."""
    a, b = np.array([3.0, 2.0]), np.array([7.0, 6.0])
    exact, _ = integrate.quad(lambda x: sps.beta.pdf(x, 3, 7) * sps.beta.cdf(x, 2, 6), 0, 1)
    p = bts_action_dist(a, b, 1, n_sim=N_SIM, seed=1)
    se = math.sqrt(exact * (1 - exact) / N_SIM)
    assert abs(p[0, 0] - exact) < 4 * se
    assert p[1, 0] == pytest.approx(1 - p[0, 0])


def test_every_slot_matches_numerical_integration(mc: np.ndarray) -> None:
    for k in range(3):
        for i in range(ALPHA.size):
            exact = exact_slot_probability(ALPHA, BETA, i, k)
            se = math.sqrt(exact * (1 - exact) / N_SIM)
            assert abs(mc[i, k] - exact) < 4.5 * se + 1e-9, (i, k, mc[i, k], exact)


def test_columns_sum_to_one_and_seeded(mc: np.ndarray) -> None:
    np.testing.assert_allclose(mc.sum(axis=0), 1.0)
    assert (mc.sum(axis=1) <= 1.0 + 1e-12).all()  # an item shows at most once per list
    np.testing.assert_array_equal(mc, bts_action_dist(ALPHA, BETA, 3, n_sim=N_SIM, seed=11))
    assert not np.array_equal(mc, bts_action_dist(ALPHA, BETA, 3, n_sim=N_SIM, seed=12))


def test_equal_priors_give_equal_probabilities() -> None:
    n = 6
    p = bts_action_dist(np.full(n, 2.0), np.full(n, 50.0), 3, n_sim=60_000, seed=3)
    se = math.sqrt((1 / n) * (1 - 1 / n) / 60_000)
    assert np.abs(p - 1 / n).max() < 4.5 * se


def test_full_list_is_a_permutation_matrix_in_expectation() -> None:
    p = bts_action_dist(ALPHA[:3], BETA[:3], 3, n_sim=1000, seed=0)
    np.testing.assert_allclose(p.sum(axis=0), 1.0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)  # every item is shown once


def test_uniform() -> None:
    u = uniform_action_dist(80, 3)
    assert u.shape == (80, 3)
    np.testing.assert_allclose(u, 1 / 80)
    np.testing.assert_allclose(u.sum(axis=0), 1.0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: bts_action_dist([1.0, 2.0], [1.0]), DataError, "same length"),
        (lambda: bts_action_dist([1.0, 0.0], [1.0, 1.0], 1), DataError, "item 1"),
        (lambda: bts_action_dist([1.0, math.nan], [1.0, 1.0], 1), DataError, "finite"),
        (lambda: bts_action_dist([1.0, 2.0], [1.0, 1.0], 3), ConfigError, "len_list"),
        (lambda: bts_action_dist([1.0, 2.0], [1.0, 1.0], 1, n_sim=0), ConfigError, "n_sim"),
        (lambda: uniform_action_dist(0), ConfigError, "n_items"),
    ],
)
def test_bad_input(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()
