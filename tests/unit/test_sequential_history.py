"""The sequential test's history (the dashboard's confidence-sequence chart): one point per
tested look, equal to a look-by-look reference built without the analysis' prefix sums."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abrec.experiment.analysis import MAX_HISTORY, EntryOrder, sequential_ctr, thin
from abrec.stats import NotTestableError, RatioStats, optimal_rho, sequential_ratio_test


def _order(n: int, look_every: int, seed: int = 3) -> EntryOrder:
    """`n` units alternating-ish between arms, CTR 0.20 vs 0.26, entered one per minute."""
    rng = np.random.default_rng(seed)
    variant = np.where(rng.random(n) < 0.5, "control", "treatment")
    exposures = rng.integers(1, 8, size=n)
    rate = np.where(variant == "treatment", 0.26, 0.20)
    clicks = rng.binomial(exposures, rate)
    ends = np.arange(look_every, n, look_every, dtype=np.int64)
    ends = np.append(ends, np.int64(n))
    start = np.datetime64("2026-03-01T08:00:00", "us")
    first_ts = start + np.arange(n) * np.timedelta64(60, "s")
    return EntryOrder(
        variant=variant.astype(np.str_),
        clicks=clicks.astype(np.int64),
        exposures=exposures.astype(np.int64),
        ends=ends,
        look_every=look_every,
        conversions=np.zeros(n, dtype=np.int64),
        first_ts=first_ts,
    )


def _ratio_stats(order: EntryOrder, arm: str, end: int) -> RatioStats:
    """Sufficient statistics of `arm` over the first `end` units, summed one unit at a time."""
    n = s_c = s_cc = s_e = s_ee = s_ce = 0
    for v, c, e in zip(order.variant[:end], order.clicks[:end], order.exposures[:end], strict=True):
        if v == arm:
            c, e = int(c), int(e)
            n, s_c, s_cc, s_e, s_ee, s_ce = (
                n + 1,
                s_c + c,
                s_cc + c * c,
                s_e + e,
                s_ee + e * e,
                s_ce + c * e,
            )
    return RatioStats(n, float(s_c), float(s_cc), float(s_e), float(s_ee), float(s_ce))


def _reference(order: EntryOrder, alpha: float, target_n: int) -> list[dict[str, object]]:
    """Per tested look: the look's own test, the running intersection and minimum p."""
    rho = optimal_rho(target_n, alpha)
    low, high, p = -math.inf, math.inf, 1.0
    out: list[dict[str, object]] = []
    for end in order.ends.tolist():
        try:
            own = sequential_ratio_test(
                _ratio_stats(order, "control", end),
                _ratio_stats(order, "treatment", end),
                alpha=alpha,
                rho=rho,
            )
        except NotTestableError:
            continue
        low, high, p = max(low, own.ci.low), min(high, own.ci.high), min(p, own.p_value)
        at = (np.datetime64("2026-03-01T08:00:00") + np.timedelta64(60 * (end - 1), "s")).item()
        out.append({
            "units": end, "at": at.isoformat() + "Z", "estimate": own.estimate,
            "low": low, "high": high, "look_low": own.ci.low, "look_high": own.ci.high,
            "p_value": p,
        })  # fmt: skip
    return out


def test_history_matches_a_look_by_look_reference() -> None:
    order = _order(1_000, look_every=50)
    res = sequential_ctr(order, "control", "treatment", alpha=0.05, target_n=2_000)
    ref = _reference(order, 0.05, 2_000)
    assert len(res.history) == res.looks_tested == len(ref) == 20
    for got, want in zip(res.history, ref, strict=True):
        assert got.units == want["units"] and got.at == want["at"]
        for key in ("estimate", "low", "high", "look_low", "look_high", "p_value"):
            assert getattr(got, key) == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    last = res.history[-1]
    assert (last.low, last.high, last.p_value) == (res.ci.low, res.ci.high, res.p_value)
    # the running interval only narrows, the running p only falls
    lows = [h.low for h in res.history]
    highs = [h.high for h in res.history]
    assert lows == sorted(lows) and highs == sorted(highs, reverse=True)


def test_history_skips_untestable_looks() -> None:
    order = _order(300, look_every=1)  # the first looks have < 2 units in an arm
    res = sequential_ctr(order, "control", "treatment", alpha=0.05, target_n=1_000)
    assert res.looks == 300 and res.looks_tested < 300
    ref = _reference(order, 0.05, 1_000)
    assert len(ref) == res.looks_tested
    kept = [h.units for h in res.history]
    assert kept == [r["units"] for r in thin(ref, MAX_HISTORY)]
    assert len(kept) == min(MAX_HISTORY, res.looks_tested)
    assert kept[0] == ref[0]["units"] and kept[-1] == 300


def test_history_unknown_times_are_null() -> None:
    order = _order(200, look_every=100)
    ts = order.first_ts
    assert ts is not None
    ts = ts.copy()
    ts[-1] = np.datetime64("NaT")
    nat = EntryOrder(
        order.variant, order.clicks, order.exposures, order.ends, 100, order.conversions, ts
    )
    res = sequential_ctr(nat, "control", "treatment", alpha=0.05, target_n=1_000)
    assert [h.at for h in res.history] == ["2026-03-01T09:39:00Z", None]


@pytest.mark.parametrize(("n", "limit"), [(0, 5), (3, 5), (5, 5), (6, 5), (1000, 200), (201, 200)])
def test_thin_keeps_ends_and_spacing(n: int, limit: int) -> None:
    points = list(range(n))
    kept = thin(points, limit)
    assert len(kept) == min(n, limit)
    assert list(kept) == sorted(set(kept))
    if n:
        assert kept[0] == 0 and kept[-1] == n - 1
    if n > limit:
        gaps = np.diff(kept)
        assert gaps.max() - gaps.min() <= 1  # evenly spaced
