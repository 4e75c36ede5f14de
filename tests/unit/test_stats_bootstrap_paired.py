"""Paired / clustered bootstrap mode against exact enumeration, a loop and scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from abrec.stats.bootstrap import Paired, bootstrap
from abrec.stats.errors import StatsInputError


def ratio(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.sum(axis=axis) / den.sum(axis=axis)


# Five rows in three clusters; the clusters hold 2, 1 and 2 rows.
NUM = np.array([1.0, 3.0, 0.5, 4.0, 2.0])
DEN = np.array([1.0, 2.0, 1.0, 3.0, 0.5])
IDS = np.array(["b", "b", "a", "c", "c"])


def _exact_distribution() -> tuple[np.ndarray, np.ndarray]:
    """All 3^3 equally likely cluster resamples, expanded to rows: (values, probabilities)."""
    rows = {c: np.flatnonzero(c == IDS) for c in ("a", "b", "c")}
    vals = []
    for pick in itertools.product("abc", repeat=3):
        idx = np.concatenate([rows[c] for c in pick])
        vals.append(NUM[idx].sum() / DEN[idx].sum())
    v = np.array(vals)
    return v, np.full(v.size, 1 / v.size)


def test_cluster_resampling_matches_exact_enumeration() -> None:
    vals, prob = _exact_distribution()
    mean = float(vals @ prob)
    sd = math.sqrt(float(((vals - mean) ** 2) @ prob))
    res = bootstrap(Paired(NUM, DEN, clusters=IDS), ratio, n_resamples=200_000, seed=1)
    assert res.interval.estimate == pytest.approx(NUM.sum() / DEN.sum())
    assert res.std_error == pytest.approx(sd, rel=0.01)
    # 27 atoms of mass 1/27: the 2.5% and 97.5% quantiles are the smallest and largest
    # values (1/27 > 0.025), exactly.
    assert res.interval.low == pytest.approx(vals.min())
    assert res.interval.high == pytest.approx(vals.max())
    # Ignoring the clusters (resampling rows) gives a visibly different spread.
    rows = bootstrap(Paired(NUM, DEN), ratio, n_resamples=200_000, seed=1)
    assert abs(rows.std_error - sd) > 0.05 * sd


def _loop_reference(groups: list[tuple[list[np.ndarray], np.ndarray | None]], n: int, seed: int):
    """Row-level loop: expand each drawn cluster to its rows, then take the statistic.

    Same seed semantics as `bootstrap`: one Generator, and per chunk one (n, n_units) integer
    draw per group in order (here a single chunk).
    """
    rng = np.random.default_rng(seed)
    draws = []
    for arrays, ids in groups:
        if ids is None:
            units = [np.array([i]) for i in range(arrays[0].size)]
        else:
            units = [np.flatnonzero(ids == u) for u in np.unique(ids)]
        draws.append((arrays, units, rng.integers(0, len(units), size=(n, len(units)))))
    out = []
    for b in range(n):
        sums = []
        for arrays, units, idx in draws:
            rows = np.concatenate([units[u] for u in idx[b]])
            sums.extend(float(x[rows].sum()) for x in arrays)
        out.append(sums)
    return np.array(out)


def test_matches_independent_loop_with_same_seed() -> None:
    rng = np.random.default_rng(3)
    n1, n2 = 60, 45
    num, den = rng.random(n1), rng.uniform(0.5, 1.5, n1)
    ids = rng.integers(0, 25, n1)
    clicks = rng.uniform(0.1, 1.0, n2)
    rounds2 = rng.integers(0, 30, n2)
    data = [Paired(num, den, clusters=ids), Paired(clicks, np.ones(n2), clusters=rounds2)]

    def rel(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, axis: int = -1):
        return ratio(a, b, axis) / ratio(c, d, axis) - 1.0

    n_boot = 2000
    res = bootstrap(data, rel, n_resamples=n_boot, seed=7)
    sums = _loop_reference([([num, den], ids), ([clicks, np.ones(n2)], rounds2)], n_boot, seed=7)
    ref = sums[:, 0] / sums[:, 1] / (sums[:, 2] / sums[:, 3]) - 1.0
    lo, hi = np.quantile(ref, [0.025, 0.975])
    assert (res.interval.low, res.interval.high) == pytest.approx((lo, hi), rel=1e-12)
    assert res.std_error == pytest.approx(ref.std(ddof=1), rel=1e-12)
    # A plain array next to a Paired group is a row-resampled independent sample.
    mixed = bootstrap(
        [Paired(num, den, clusters=ids), clicks],
        lambda a, b, c, axis: ratio(a, b, axis) - c.mean(axis=axis),
        n_resamples=500,
        seed=2,
    )
    sums = _loop_reference([([num, den], ids), ([clicks], None)], 500, seed=2)
    ref = sums[:, 0] / sums[:, 1] - sums[:, 2] / n2
    assert mixed.interval.low == pytest.approx(np.quantile(ref, 0.025), rel=1e-12)


def test_paired_bca_matches_scipy_paired() -> None:
    """Row-paired BCa (jackknife leaves one row out of both arrays) vs scipy's paired=True."""
    rng = np.random.default_rng(5)
    x = rng.gamma(2.0, size=80)
    y = x + rng.normal(0.3, 1.0, size=80)
    ours = bootstrap(Paired(x, y), ratio, n_resamples=20_000, method="bca", seed=1)
    ref = sps.bootstrap(
        (x, y), ratio, paired=True, n_resamples=20_000, method="BCa", random_state=2
    )
    ci = ref.confidence_interval
    assert ours.interval.low == pytest.approx(ci.low, rel=0.02)
    assert ours.interval.high == pytest.approx(ci.high, rel=0.02)
    assert ours.std_error == pytest.approx(ref.standard_error, rel=0.03)


def test_plain_samples_unchanged_and_paired_of_one_array() -> None:
    x = np.random.default_rng(8).normal(size=50)
    a = bootstrap(x, np.mean, n_resamples=500, seed=4)
    assert bootstrap(Paired(x), np.mean, n_resamples=500, seed=4) == a


def test_nonfinite_raise_or_omit() -> None:
    num = np.array([1.0, 2.0, 0.0, 0.0])
    den = np.array([1.0, 1.0, 0.0, 0.0])  # a resample of only the last two rows is 0/0
    with pytest.raises(StatsInputError, match="nonfinite='omit'"):
        bootstrap(Paired(num, den), ratio, n_resamples=2000, seed=0)
    res = bootstrap(Paired(num, den), ratio, n_resamples=2000, seed=0, nonfinite="omit")
    sums = _loop_reference([([num, den], None)], 2000, seed=0)
    with np.errstate(invalid="ignore"):
        ref = sums[:, 0] / sums[:, 1]
    ref = ref[np.isfinite(ref)]
    assert ref.size < 2000
    assert (res.interval.low, res.interval.high) == pytest.approx(
        tuple(np.quantile(ref, [0.025, 0.975]))
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Paired([1.0, 2.0], [1.0]), "same length"),
        (lambda: Paired([1.0, 2.0], clusters=[0, 0]), "at least 2 distinct clusters"),
        (lambda: Paired([1.0, 2.0], clusters=[0]), "one id per row"),
        (lambda: Paired([1.0]), "at least 2 rows"),
        (lambda: Paired(), "at least one array"),
        (lambda: bootstrap(Paired([1.0, 2.0]), ratio, nonfinite="drop"), "nonfinite"),
        (lambda: bootstrap([1.0, 2.0], np.mean, n_resamples=5), "n_resamples"),
    ],
)
def test_bad_input(make, match: str) -> None:
    with pytest.raises(StatsInputError, match=match):
        make()


def test_jackknife_leaves_one_unit_out_of_every_paired_array() -> None:
    """BCa's acceleration uses leave-one-out values; for a Paired group the unit leaves all
    its arrays at once (checked against a loop; a per-array jackknife would differ)."""
    from abrec.stats.bootstrap import _groups, _jackknife

    rng = np.random.default_rng(6)
    num, den, z = rng.random(7), rng.uniform(0.5, 1.0, 7), rng.random(5)

    def stat(a: np.ndarray, b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return ratio(a, b, axis) + c.mean(axis=axis)

    got = _jackknife(stat, _groups([Paired(num, den), z]))
    keep = lambda n, i: np.arange(n) != i  # noqa: E731
    ref0 = [num[keep(7, i)].sum() / den[keep(7, i)].sum() + z.mean() for i in range(7)]
    ref1 = [num.sum() / den.sum() + z[keep(5, i)].mean() for i in range(5)]
    np.testing.assert_allclose(got[0], ref0)
    np.testing.assert_allclose(got[1], ref1)
