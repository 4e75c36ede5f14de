"""Whole-experiment analysis: aggregation equals per-group sums; corrections; SRM."""

from __future__ import annotations

import numpy as np
import pytest

import abrec.stats as st
from abrec.stats import analysis as an


@pytest.fixture(scope="module")
def cols() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    n = 700_000  # more than two aggregation chunks
    return {
        "conv": rng.binomial(1, 0.1, n).astype(float),
        "rev": rng.gamma(2, 5, n),
        "pre": rng.gamma(2, 5, n),
        "clicks": rng.poisson(1, n).astype(float),
        "exp": rng.poisson(5, n) + 1.0,
        "variant": rng.choice(np.array([3, 7, 9]), n),
    }


def test_aggregate_matches_per_group_arrays(cols: dict[str, np.ndarray]) -> None:
    metrics = [
        an.MetricSpec.parse("conv:proportion"),
        an.MetricSpec.parse("rev:mean", covariate="pre"),
        an.MetricSpec.parse("clicks/exp:ratio"),
    ]
    labels, counts, stats = an.aggregate(cols, cols["variant"], metrics)
    assert labels == ["3", "7", "9"]
    for i, g in enumerate([3, 7, 9]):
        m = cols["variant"] == g
        assert counts[i] == m.sum()
        ref_c = st.MeanStats.from_array(cols["conv"][m])
        ref_r = st.CupedStats.from_arrays(cols["rev"][m], cols["pre"][m])
        ref_q = st.RatioStats.from_arrays(cols["clicks"][m], cols["exp"][m])
        for got, ref in (
            (stats["conv"][i], ref_c),
            (stats["rev"][i], ref_r),
            (stats["clicks/exp"][i], ref_q),
        ):
            assert type(got) is type(ref)
            for f in ref.__dataclass_fields__:
                assert getattr(got, f) == pytest.approx(getattr(ref, f), rel=1e-10)


def test_analyze_experiment_multi_variant(cols: dict[str, np.ndarray]) -> None:
    labels = np.array(["ctl", "b", "c"])[np.searchsorted([3, 7, 9], cols["variant"])]
    res = st.analyze_experiment(
        cols,
        labels,
        control="ctl",
        metrics=[an.MetricSpec.parse("conv:proportion"), an.MetricSpec.parse("rev:mean")],
    )
    assert [c.variant for c in res.comparisons] == ["b", "c", "b", "c"]
    ps = [c.p_value for c in res.comparisons]
    assert [c.p_value_holm for c in res.comparisons] == pytest.approx(list(st.holm(ps)))
    assert [c.p_value_bh for c in res.comparisons] == pytest.approx(list(st.benjamini_hochberg(ps)))
    assert not res.srm.mismatch
    m = labels == "b"
    direct = st.welch_ttest(
        st.MeanStats.from_array(cols["rev"][labels == "ctl"]),
        st.MeanStats.from_array(cols["rev"][m]),
    )
    got = res.comparisons[2].result
    assert isinstance(got, st.EffectResult) and got.metric == "rev"
    assert got.p_value == pytest.approx(direct.p_value, rel=1e-8)
    assert got.absolute.low == pytest.approx(direct.absolute.low, rel=1e-8)
    assert got.relative.high == pytest.approx(direct.relative.high, rel=1e-8)
    d = res.to_dict()
    assert d["comparisons"][0]["result"]["method"] == "z-test-proportions"


def test_analyze_bad_input() -> None:
    cols = {"y": np.array([1.0, 2.0, np.nan, 4.0])}
    with pytest.raises(st.StatsInputError, match="missing"):
        st.analyze_experiment(
            cols,
            np.array(["A", "B", "A", "B"]),
            control="A",
            metrics=[an.MetricSpec.parse("y:mean")],
        )
    with pytest.raises(st.StatsInputError, match="one variant"):
        st.analyze_experiment(
            {"y": np.arange(4.0)},
            np.array(["A"] * 4),
            control="A",
            metrics=[an.MetricSpec.parse("y:mean")],
        )
    with pytest.raises(st.StatsInputError, match="weights are missing"):
        st.analyze_experiment(
            {"y": np.arange(4.0)},
            np.array(["A", "B"] * 2),
            control="A",
            metrics=[an.MetricSpec.parse("y:mean")],
            weights={"A": 1.0},
        )
    with pytest.raises(st.StatsInputError, match="NUMERATOR/DENOMINATOR"):
        an.MetricSpec.parse("clicks:ratio")
