"""Always-valid p-value and confidence sequence against independent references.

The references (`_sequential_reference`) are written from the papers: the mixture SPRT
closed form of Johari et al. (2017), Howard et al.'s (2021) normal-mixture boundary,
numerical integration of the mixture likelihood ratio, and the exact crossing probability of
the boundary under H0 (a grid recursion). Every H0 simulation is bounded from both sides
around that exact rate: a weaker penalty raises the rate, a stronger one costs power.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from _sequential_reference import (
    band,
    exact_crossing_rate,
    howard_radius,
    johari_pvalue,
    quad_log_lambda,
    quad_radius,
)

import abrec.stats as st

GRID_N = [2, 37, 1_000, 250_000]
GRID_D = [-0.8, -0.013, 0.0, 0.0021, 0.05, 1.7]
GRID_V = [1e-6, 3e-4, 0.02, 2.5]
GRID_RHO = [0.002, 0.03, 0.4, 3.0]
GRID_ALPHA = [0.001, 0.05, 0.2]


def test_pvalue_matches_mixture_sprt_closed_form_on_a_grid() -> None:
    interior = 0
    for n, d, v, rho in itertools.product(GRID_N, GRID_D, GRID_V, GRID_RHO):
        got = float(st.always_valid_pvalue(d, v, n, rho))
        ref = johari_pvalue(d, v, n, rho)
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-300), (n, d, v, rho)
        interior += 1e-6 < ref < 1.0
    assert interior >= 60  # the grid really exercises p strictly between 0 and 1
    # vectorised over arrays, element by element the same
    n, d, v = np.meshgrid(GRID_N, GRID_D, GRID_V, indexing="ij")
    got = st.always_valid_pvalue(d, v, n, 0.03)
    ref = np.vectorize(johari_pvalue)(d, v, n, 0.03)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize(
    ("d", "v", "n", "rho"),
    [
        (0.05, 0.02, 1_000, 0.03),
        (-0.013, 3e-4, 37, 0.4),
        (1.7, 2.5, 250_000, 0.002),
        (0.0, 1.0, 10, 1.0),
    ],
)
def test_pvalue_matches_numerical_mixture_integral(d: float, v: float, n: int, rho: float) -> None:
    log_lambda = quad_log_lambda(d, v, n, rho)
    ref = min(1.0, math.exp(-log_lambda))
    assert float(st.always_valid_pvalue(d, v, n, rho)) == pytest.approx(ref, rel=1e-9)


def test_radius_matches_howard_boundary_on_a_grid() -> None:
    for v, n, rho, alpha in itertools.product(GRID_V, GRID_N, GRID_RHO, GRID_ALPHA):
        got = float(st.confidence_sequence_radius(v, n, rho, alpha))
        assert got == pytest.approx(howard_radius(v, n, rho, alpha), rel=1e-9), (v, n, rho, alpha)


@pytest.mark.parametrize(
    ("v", "n", "rho", "alpha"),
    [(0.02, 1_000, 0.03, 0.05), (3e-4, 37, 0.4, 0.001), (2.5, 2, 3.0, 0.2)],
)
def test_radius_is_where_the_mixture_integral_reaches_one_over_alpha(
    v: float, n: int, rho: float, alpha: float
) -> None:
    got = float(st.confidence_sequence_radius(v, n, rho, alpha))
    assert got == pytest.approx(quad_radius(v, n, rho, alpha), rel=1e-9)


def _random_mean_stats(rng: np.random.Generator) -> tuple[st.MeanStats, st.MeanStats, dict]:
    """Two arms' sufficient statistics, and the effect and V computed here from them."""
    nc, nt = rng.integers(2, 5_000, size=2)
    mc, mt = rng.normal(0, 1, size=2)
    mt = mc + (mt - mc) * 10.0 ** rng.uniform(-3, 0)  # effects from tiny to large
    sc, s_t = 10.0 ** rng.uniform(-2, 1, size=2)
    c = st.MeanStats(int(nc), nc * mc, (nc - 1) * sc**2 + nc * mc**2)
    t = st.MeanStats(int(nt), nt * mt, (nt - 1) * s_t**2 + nt * mt**2)
    ref = {"d": mt - mc, "v": sc**2 / nc + s_t**2 / nt, "n": int(nc + nt)}
    return c, t, ref


def test_reject_exactly_when_zero_is_outside_the_sequence_random_draws() -> None:
    rng = np.random.default_rng(11)
    rejected = 0
    for _ in range(3_000):
        c, t, ref = _random_mean_stats(rng)
        rho, alpha = 10.0 ** rng.uniform(-3, 0.5), float(rng.choice([0.001, 0.01, 0.05, 0.1]))
        res = st.sequential_test(c, t, rho=rho, alpha=alpha)
        rad = howard_radius(ref["v"], ref["n"], rho, alpha)
        # the sequence is centred on treatment - control with the reference radius
        assert res.estimate == pytest.approx(ref["d"], rel=1e-9, abs=1e-12)
        assert res.ci.low == pytest.approx(ref["d"] - rad, rel=1e-8, abs=1e-12)
        assert res.ci.high == pytest.approx(ref["d"] + rad, rel=1e-8, abs=1e-12)
        assert res.p_value == pytest.approx(
            johari_pvalue(ref["d"], ref["v"], ref["n"], rho), rel=1e-8, abs=1e-300
        )
        if abs(abs(ref["d"]) / rad - 1.0) < 1e-9:
            continue  # on the boundary itself rounding decides
        assert (res.p_value <= alpha) == (not res.ci.contains(0.0)), (c, t, rho, alpha)
        assert (res.decision == "reject") == (res.p_value <= alpha)
        rejected += res.p_value <= alpha
    assert 300 < rejected < 2_700  # both outcomes occur many times


def test_h0_false_positive_rate_equals_exact_crossing_rate_known_variance() -> None:
    """Gaussian data with known variance, a look every 100 units for 100 looks."""
    alpha, per_look, looks, n_sims = 0.05, 100, 100, 40_000
    rho = st.optimal_rho(5_000, alpha)
    n = per_look * np.arange(1, looks + 1)
    rate0 = exact_crossing_rate(n * rho * rho, alpha)
    assert 0.015 < rate0 < alpha  # the procedure is valid but not trivially conservative
    rng = np.random.default_rng(12)
    # the difference in means after k looks of per_look/2 units per arm: its variance is
    # 2 / (k per_look / 2) for unit-variance data; its increments are independent.
    half = per_look // 2
    steps = rng.normal(0.0, math.sqrt(2.0 / half), size=(n_sims, looks))
    d = np.cumsum(steps, axis=1) / np.arange(1, looks + 1)
    v = 2.0 / (half * np.arange(1, looks + 1))
    p = st.always_valid_pvalue(d, v, n, rho)
    fpr = float((p <= alpha).any(axis=1).mean())
    lo, hi = band(rate0, n_sims, k_sd=4.5)
    assert lo <= fpr <= hi, f"H0 rate {fpr} outside [{lo:.4f}, {hi:.4f}] (exact {rate0:.4f})"
    # the same decisions from the confidence sequence: reject when 0 leaves the sequence
    rad = st.confidence_sequence_radius(v, n, rho, alpha)
    assert float((np.abs(d) >= rad).any(axis=1).mean()) == pytest.approx(fpr, abs=2 / n_sims)


def _ratio_units(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Per-unit exposures and clicks, and a random 50/50 arm per unit (same law in both)."""
    exposures = rng.poisson(3.0, shape) + 1.0
    clicks = rng.binomial(exposures.astype(np.int64), rng.beta(2.0, 18.0, shape)).astype(float)
    treated = rng.random(shape) < 0.5
    return exposures, clicks, treated


def _look_sums(
    values: dict[str, np.ndarray], in_arm: np.ndarray, ends: np.ndarray
) -> list[list[tuple[float, ...]]]:
    """Per run, per look: (units, sum num, sum num^2, sum den, sum den^2, sum num den) of one
    arm over the first `end` units, from cumulative sums of the unit-level values."""
    m = in_arm.astype(np.float64)
    num, den = values["num"], values["den"]
    cols = [m, num * m, num * num * m, den * m, den * den * m, num * den * m]
    sums = np.stack([np.cumsum(c, axis=1)[:, ends - 1] for c in cols], axis=-1)
    return sums.tolist()  # type: ignore[no-any-return]


@pytest.mark.slow
def test_h0_service_path_monitor_over_ratio_looks() -> None:
    """The service's path: entry-ordered units, a look every 100 units, RatioStats per arm
    (clicks / exposures), `SequentialMonitor` (running minimum) over the looks."""
    alpha, every, looks, n_sims = 0.05, 100, 40, 2_500
    rho = st.optimal_rho(500, alpha)
    ends = every * np.arange(1, looks + 1)
    rate0 = exact_crossing_rate(ends * rho * rho, alpha)
    rng = np.random.default_rng(13)
    exposures, clicks, treated = _ratio_units(rng, (n_sims, every * looks))
    unit_values = {"num": clicks, "den": exposures}
    ctrl, trt = _look_sums(unit_values, ~treated, ends), _look_sums(unit_values, treated, ends)
    rejected = 0
    for i in range(n_sims):
        mon = st.SequentialMonitor(alpha=alpha, rho=rho)
        for c, t in zip(ctrl[i], trt[i], strict=True):
            res = mon.update(st.RatioStats(int(c[0]), *c[1:]), st.RatioStats(int(t[0]), *t[1:]))
        assert res.looks == looks and res.n_control + res.n_treatment == every * looks
        rejected += res.decision == "reject"
    fpr = rejected / n_sims
    # The plug-in (delta-method) variance, ~50 units per arm at the first look, makes the rate
    # slightly higher than with a known variance: 0.0191 vs 0.0184 exact in a 40,000-run
    # simulation of this design; allow 0.003 above the band. (Halving the penalty term
    # log(1 + n rho^2) gives 0.039 here.)
    lo, hi = band(rate0, n_sims, extra=0.003)
    assert lo <= fpr <= hi, f"H0 rate {fpr} outside [{lo:.4f}, {hi:.4f}] (exact {rate0:.4f})"


@pytest.mark.slow
def test_confidence_sequence_coverage_under_a_real_effect() -> None:
    """Mean metric with a true effect of 0.25 sd: the running intersection holds the true
    difference at every look with probability 1 - (exact crossing rate), not much more."""
    alpha, half, looks, n_sims, effect = 0.05, 50, 20, 2_000, 0.25
    rho = st.optimal_rho(500, alpha)
    rate0 = exact_crossing_rate(2 * half * np.arange(1, looks + 1) * rho * rho, alpha)
    rng = np.random.default_rng(14)
    xc = rng.normal(1.0, 1.0, (n_sims, half * looks))
    xt = rng.normal(1.0 + effect, 1.0, (n_sims, half * looks))
    ends = half * np.arange(1, looks + 1)

    def prefix(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.cumsum(x, axis=1)[:, ends - 1], np.cumsum(x * x, axis=1)[:, ends - 1]

    (sc, qc), (s_t, qt) = prefix(xc), prefix(xt)
    missed = 0
    rejected = 0
    for i in range(n_sims):
        mon = st.SequentialMonitor(alpha=alpha, rho=rho)
        covered = True
        for j, m in enumerate(ends):
            res = mon.update(
                st.MeanStats(int(m), sc[i, j], qc[i, j]), st.MeanStats(int(m), s_t[i, j], qt[i, j])
            )
            covered &= res.ci.contains(effect)
        missed += not covered
        rejected += res.decision == "reject"
    miss = missed / n_sims
    lo, hi = band(rate0, n_sims, extra=0.003)  # Gaussian data, plug-in variance: see above
    assert lo <= miss <= hi, f"miscoverage {miss} outside [{lo:.4f}, {hi:.4f}] ({rate0:.4f})"
    assert rejected / n_sims > 0.5  # the effect is found most of the time
