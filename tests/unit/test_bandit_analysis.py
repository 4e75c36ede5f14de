"""Per-arm naive / IPS / Hájek values: exact hand-computed estimates, bootstrap intervals
against scipy's paired bootstrap, the analysis record and its bad-input errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from abrec.bandit import (
    NOTE,
    BanditAnalysis,
    BanditSettings,
    analyse_bandit,
    apply_min_share,
    arm_estimates,
    ips_arm_values,
    prob_best,
)
from abrec.errors import DataError

ARM = ["A", "A", "B", "B", "B", "A"]
REWARD = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5]
PROP = [0.5, 0.5, 0.5, 0.8, 0.8, 0.2]


def test_point_estimates_by_hand() -> None:
    est = arm_estimates(ARM, REWARD, PROP, ["A", "B"])
    # naive: plain means within the arm
    np.testing.assert_allclose(est["naive"], [1.5 / 3, 2 / 3], rtol=1e-15)
    # IPS: (1/N) sum Y/p, N = 6 units in all
    np.testing.assert_allclose(est["ips"], [(2 + 2.5) / 6, (2 + 1.25) / 6], rtol=1e-15)
    # Hajek: sum Y/p / sum 1/p within the arm
    np.testing.assert_allclose(est["hajek"], [4.5 / 9, 3.25 / 4.5], rtol=1e-15)
    # an arm with no units: naive and Hajek undefined, IPS zero
    empty = arm_estimates(ARM, REWARD, PROP, ["A", "B", "C"])
    assert math.isnan(empty["naive"][2]) and math.isnan(empty["hajek"][2])
    assert empty["ips"][2] == 0.0


def test_estimates_are_vectorised_over_runs() -> None:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(4, 50))
    y = rng.random((4, 50))
    p = rng.uniform(0.1, 1.0, size=(4, 50))
    batch = arm_estimates(codes, y, p, [0, 1, 2])
    for r in range(4):
        one = arm_estimates(codes[r], y[r], p[r], [0, 1, 2])
        for name in ("naive", "ips", "hajek"):
            np.testing.assert_allclose(batch[name][r], one[name], rtol=1e-14)


@pytest.fixture(scope="module")
def log() -> dict[str, np.ndarray]:
    """400 units, three arms with different logged probabilities and rewards."""
    rng = np.random.default_rng(3)
    n = 400
    p_by_arm = np.array([0.2, 0.3, 0.5])
    codes = rng.choice(3, size=n, p=p_by_arm)
    p = p_by_arm[codes] * rng.uniform(0.7, 1.3, size=n)  # weights changed over time
    y = rng.poisson(np.array([0.5, 1.0, 1.5])[codes]).astype(float)
    return {"codes": codes, "y": y, "p": np.minimum(p, 1.0)}


def _scipy_ci(log: dict[str, np.ndarray], k: int, name: str, n: int) -> tuple[float, float]:
    """Percentile CI from scipy's paired bootstrap (rows resampled jointly)."""

    def stat(codes: np.ndarray, y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
        ind = codes == k
        w = np.where(ind, 1.0 / p, 0.0)
        if name == "naive":
            return np.where(ind, y, 0).sum(axis) / ind.sum(axis)
        if name == "ips":
            return (w * y).sum(axis) / codes.shape[axis]
        return (w * y).sum(axis) / w.sum(axis)

    res = sps.bootstrap(
        (log["codes"], log["y"], log["p"]),
        stat,
        paired=True,
        vectorized=True,
        n_resamples=n,
        method="percentile",
        random_state=np.random.default_rng(99),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def test_bootstrap_intervals_match_scipy_paired_bootstrap(log: dict[str, np.ndarray]) -> None:
    n = 20_000
    values = ips_arm_values(log["codes"], log["y"], log["p"], [0, 1, 2], n_resamples=n, seed=1)
    est = arm_estimates(log["codes"], log["y"], log["p"], [0, 1, 2])
    for k, v in enumerate(values):
        assert v.arm == k and v.n_units == int((log["codes"] == k).sum())
        for name in ("naive", "ips", "hajek"):
            got = getattr(v, name)
            assert got.estimate == est[name][k]
            lo, hi = _scipy_ci(log, k, name, n)
            width = hi - lo
            assert got.low == pytest.approx(lo, abs=0.04 * width), (k, name)
            assert got.high == pytest.approx(hi, abs=0.04 * width), (k, name)


def test_small_arms_get_no_ratio_interval() -> None:
    rng = np.random.default_rng(0)
    arm = np.array(["a"] * 200 + ["b"] * 5)
    y = rng.random(205)
    p = np.where(arm == "a", 0.95, 0.05)
    a, b = ips_arm_values(arm, y, p, ["a", "b"], n_resamples=500)
    assert math.isfinite(a.naive.low) and math.isfinite(a.hajek.high) and not a.notes
    assert math.isnan(b.naive.low) and math.isnan(b.hajek.high)
    assert math.isfinite(b.ips.low) and b.ips.low <= b.ips.estimate <= b.ips.high
    assert "5 unit(s)" in b.notes[0]
    assert b.to_dict()["naive"]["low"] is None


def test_analyse_bandit_record(log: dict[str, np.ndarray]) -> None:
    settings = BanditSettings(min_share=0.1, draws=5000)
    arms = ["x", "y", "z"]
    labels = np.array(arms)[log["codes"]]
    successes, trials = np.array([30, 45, 80]), np.array([1000, 1000, 1000])
    res = analyse_bandit(
        labels,
        log["y"],
        log["p"],
        arms,
        successes=successes,
        trials=trials,
        units=[500, 500, 500],  # units already assigned, as the service reads them
        settings=settings,
        seed=4,
        n_resamples=300,
    )
    assert isinstance(res, BanditAnalysis) and res.arms == ("x", "y", "z")
    assert res.n_units == tuple(int((log["codes"] == k).sum()) for k in range(3))
    assert not res.in_burn_in and min(res.n_units) < 100  # the log may be a sample
    best = prob_best(successes, trials, draws=5000, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(res.prob_best, best)
    np.testing.assert_array_equal(res.weights, apply_min_share(best, 0.1))
    assert min(res.weights) >= 0.1 and res.weights[2] == max(res.weights) > 0.75
    assert res.value("y").n_units == res.n_units[1]
    with pytest.raises(KeyError, match="not an arm"):
        res.value("w")
    assert res.note == NOTE and "Nie et al. 2018" in NOTE and "Hadad et al. 2021" in NOTE
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["settings"]["min_share"] == 0.1 and d["values"][0]["hajek"]["estimate"] > 0
    # burn-in: an arm under burn_in units keeps equal weights
    early = analyse_bandit(
        labels,
        log["y"],
        log["p"],
        arms,
        successes=successes,
        trials=trials,
        units=[99, 500, 500],
        n_resamples=100,
    )
    assert early.in_burn_in and early.weights == (1 / 3, 1 / 3, 1 / 3)


@pytest.mark.parametrize(
    ("arm", "reward", "prop", "arms", "match"),
    [
        (
            ARM,
            REWARD,
            [0.5, 0.5, 0.0, 0.8, 0.8, 0.2],
            ["A", "B"],
            r"propensity must lie in \(0, 1\]",
        ),
        (ARM, REWARD, [0.5, 0.5, 1.2, 0.8, 0.8, 0.2], ["A", "B"], r"unit \[2\] has 1.2"),
        (ARM, REWARD, PROP, ["A", "C"], "'B' is not one of the arms"),
        ([0, 0, 1, 1, 1, 0], REWARD, PROP, ["0", "1"], "check the label type"),
        (ARM, REWARD[:5], PROP, ["A", "B"], "same shape"),
        (ARM, [1.0, math.nan, 1, 1, 0, 0], PROP, ["A", "B"], "NaN or inf"),
        (ARM, REWARD, PROP, ["A", "A"], "distinct"),
        (ARM, REWARD, PROP, ["A"], "at least 2 arms"),
        ([], [], [], ["A", "B"], "empty"),
    ],
)
def test_bad_logs_raise_clear_errors(
    arm: object, reward: object, prop: object, arms: list[str], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        ips_arm_values(arm, reward, prop, arms, n_resamples=100)


def test_analyse_bandit_checks_the_totals() -> None:
    with pytest.raises(DataError, match="one count per arm"):
        analyse_bandit(
            ARM, REWARD, PROP, ["A", "B"], successes=[1, 2, 3], trials=[5, 5, 5], n_resamples=100
        )
    with pytest.raises(DataError, match="successes exceed trials"):
        analyse_bandit(
            ARM, REWARD, PROP, ["A", "B"], successes=[6, 2], trials=[5, 5], n_resamples=100
        )
