"""PSI, KS and the centroid shift against independent references and known shifts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from abrec.stats.drift import (
    PSI_ALARM,
    PSI_EPSILON,
    KSResult,
    bin_shares,
    centroid,
    cosine_shift,
    drift_check,
    is_alarm,
    ks_test,
    psi,
    psi_from_shares,
    quantile_edges,
)
from abrec.stats.errors import StatsInputError


def test_psi_on_known_bins_by_hand() -> None:
    # Reference 0..99: decile edges 9.9, 19.8, ..., so 10 values (10 %) in each bin.
    ref = np.arange(100, dtype=float)
    edges = quantile_edges(ref)
    assert edges == pytest.approx([9.9 * i for i in range(1, 10)])
    assert bin_shares(ref, edges) == pytest.approx([0.1] * 10)
    # Serving: 20 values in bin 0, 30 in bin 1, none in bin 2, 50 in bin 9.
    srv = np.array([0.0] * 20 + [15.0] * 30 + [99.0] * 50)
    s = [0.2, 0.3, 0.0, 0, 0, 0, 0, 0, 0, 0.5]
    assert bin_shares(srv, edges) == pytest.approx(s)
    e = PSI_EPSILON
    by_hand = (
        (0.2 - 0.1) * math.log(2.0)
        + (0.3 - 0.1) * math.log(3.0)
        + 7 * (e - 0.1) * math.log(e / 0.1)
        + (0.5 - 0.1) * math.log(5.0)
    )
    assert psi(ref, srv) == pytest.approx(by_hand, rel=1e-12)
    assert psi_from_shares([0.1] * 10, s) == pytest.approx(by_hand, rel=1e-12)


def test_psi_is_zero_for_identical_samples_and_symmetric_in_shares() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=1000)
    assert psi(x, x) == 0.0
    a, b = [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]
    assert psi_from_shares(a, b) == pytest.approx(psi_from_shares(b, a), rel=1e-12)


def test_psi_edges_merge_ties() -> None:
    ref = np.array([1.0] * 90 + [2.0] * 10)  # discrete: most quantiles tie at 1
    edges = quantile_edges(ref)
    assert edges == pytest.approx([1.0, 1.1])  # the 90 % quantile interpolates to 1.1
    assert bin_shares(ref, edges) == pytest.approx([0.9, 0.0, 0.1])


def _population_psi(delta: float, bins: int = 10) -> float:
    """PSI of N(delta, 1) against N(0, 1) on the decile bins of N(0, 1) (no sampling)."""
    q = sps.norm.ppf(np.arange(1, bins) / bins)
    cdf = np.concatenate([[0.0], sps.norm.cdf(q - delta), [1.0]])
    s = np.diff(cdf)
    r = np.full(bins, 1.0 / bins)
    return float(np.sum((s - r) * np.log(s / r)))


def test_psi_no_shift_is_small_and_known_shift_alarms() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    ref = rng.normal(size=n)
    same = rng.normal(size=n)
    assert psi(ref, same) < 0.01  # expected about (bins - 1) / n * 2 = 0.001
    assert psi(ref, same) < 0.1
    shifted = rng.normal(loc=0.5, size=n)
    expected = _population_psi(0.5)
    assert expected > PSI_ALARM  # a half-SD mean shift crosses the usual 0.2 alarm
    assert psi(ref, shifted) == pytest.approx(expected, abs=0.03)
    assert psi(ref, rng.normal(loc=1.0, size=n)) == pytest.approx(_population_psi(1.0), abs=0.06)


def _ecdf_gap(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.concatenate([a, b])
    fa = (a[None, :] <= grid[:, None]).mean(axis=1)
    fb = (b[None, :] <= grid[:, None]).mean(axis=1)
    return float(np.max(np.abs(fa - fb)))


def test_ks_statistic_is_the_largest_ecdf_gap() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=300), rng.normal(0.3, 1.2, size=250)
    assert ks_test(a, b).statistic == pytest.approx(_ecdf_gap(a, b), abs=1e-12)


def test_ks_pvalue_equals_the_exact_permutation_distribution() -> None:
    # Without ties, the exact two-sided KS p-value is the share of the C(10, 5) splits of the
    # pooled sample whose ECDF gap is at least the observed one.
    a = np.array([0.1, 0.5, 0.9, 1.3, 2.0])
    b = np.array([0.7, 1.6, 2.4, 2.8, 3.1])
    pooled = np.concatenate([a, b])
    observed = _ecdf_gap(a, b)
    gaps = []
    for left in itertools.combinations(range(10), 5):
        mask = np.zeros(10, dtype=bool)
        mask[list(left)] = True
        gaps.append(_ecdf_gap(pooled[mask], pooled[~mask]))
    exact = np.mean(np.asarray(gaps) >= observed - 1e-12)
    got = ks_test(a, b)
    assert got.statistic == pytest.approx(observed)
    assert got.p_value == pytest.approx(exact, rel=1e-9)


def test_centroid_shift_equals_the_cosine_of_a_known_rotation() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(200, 8))
    theta = 0.4
    rot = np.eye(8)
    rot[:2, :2] = [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
    ref_c = centroid(base)
    # Rotating every vector rotates the centroid; choose the plane of the centroid itself.
    q, _ = np.linalg.qr(np.column_stack([ref_c, rng.normal(size=(8, 7))]))
    r_plane = q @ rot @ q.T
    moved = base @ r_plane.T
    assert cosine_shift(ref_c, centroid(moved)) == pytest.approx(1 - math.cos(theta), abs=1e-12)
    assert cosine_shift(ref_c, ref_c) == pytest.approx(0.0, abs=1e-12)
    assert cosine_shift([1.0, 0.0], [-1.0, 0.0]) == pytest.approx(2.0)
    with pytest.raises(StatsInputError, match="zero vector"):
        cosine_shift([0.0, 0.0], [1.0, 0.0])


def test_alarm_rule() -> None:
    assert is_alarm(0.21, None)
    assert not is_alarm(0.2, None)
    assert not is_alarm(0.05, KSResult(0.09, 1e-9))  # significant but tiny gap
    assert is_alarm(0.05, KSResult(0.1, 1e-4))
    assert not is_alarm(0.05, KSResult(0.5, 0.01))


def test_drift_check_bundles_psi_and_ks() -> None:
    rng = np.random.default_rng(11)
    ref, srv = rng.normal(size=4000), rng.normal(loc=1.0, size=3000)
    c = drift_check("scores", "ease", ref, srv)
    assert c.psi == pytest.approx(psi(ref, srv))
    assert c.ks_statistic == pytest.approx(ks_test(ref, srv).statistic)
    assert c.alarm and c.n_reference == 4000 and c.n_serving == 3000
    quiet = drift_check("scores", "ease", ref, rng.normal(size=3000))
    assert not quiet.alarm and quiet.psi is not None and quiet.psi < 0.1


@pytest.mark.parametrize("bad", [[], [1.0, math.nan]])
def test_bad_samples_are_refused(bad: list[float]) -> None:
    with pytest.raises(StatsInputError):
        psi([1.0, 2.0, 3.0], bad)
