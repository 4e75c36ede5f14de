"""analyze() on real SQLite and PostgreSQL against statistics computed independently in numpy/scipy."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats
from statsmodels.stats.multitest import multipletests

import abrec.stats as st
from abrec.errors import ExperimentError
from abrec.experiment import analysis as exp_analysis
from abrec.experiment.analysis import ExperimentResults, analyze
from abrec.experiment.spec import ExperimentSpec
from abrec.stats import (
    Interval,
    MeanStats,
    MetricSpec,
    NotTestableError,
    RatioStats,
    SequentialResult,
    StatsError,
    column_source,
    sequential_ratio_test,
    sequential_test,
)
from abrec.store import Event, EventStore

T0 = datetime(2024, 6, 1, tzinfo=UTC)
N_UNITS = 1600
TRUE_CTR = {"control": 0.10, "lm": 0.13}


def _spec(**kw: object) -> ExperimentSpec:
    data: dict[str, object] = {
        "id": "recs",
        "status": "running",
        "guardrails": ["exposures_per_unit"],
        "variants": [
            {"name": "control", "weight": 0.5, "model": "popularity"},
            {"name": "lm", "weight": 0.5, "model": "minilm"},
        ],
    }
    data.update(kw)
    return ExperimentSpec.model_validate(data)


def _simulate(
    seed: int = 11, cov_share: float = 1.0
) -> tuple[list[Event], dict[str, dict[str, np.ndarray]]]:
    """Synthetic events with a known CTR lift and a covariate correlated with clicks.

    A unit has a covariate event with probability ``cov_share``; its ``x`` is NaN otherwise.
    """
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    per_unit: dict[str, dict[str, list[float]]] = {
        v: {"e": [], "c": [], "v": [], "x": []} for v in TRUE_CTR
    }
    k = 0

    def add(unit: str, variant: str, kind: str, value: float | None = None) -> None:
        nonlocal k
        events.append(
            Event(
                event_id=f"ev{k}",
                ts=T0,
                experiment="recs",
                variant=variant,
                unit_id=unit,
                type=kind,
                value=value,
            )
        )
        k += 1

    for u in range(N_UNITS):
        variant = "control" if rng.random() < 0.5 else "lm"
        unit = f"user-{u}"
        propensity = TRUE_CTR[variant] * rng.lognormal(0.0, 0.5) / np.exp(0.125)
        propensity = min(propensity, 0.95)
        n_exp = 1 + int(rng.poisson(4))
        n_click = int(rng.binomial(n_exp, propensity))
        n_conv = int(rng.binomial(n_click, 0.3))
        x = float(rng.poisson(40 * propensity / TRUE_CTR[variant] * 0.1 * 10))  # pre-period
        for kind, n in (("exposure", n_exp), ("click", n_click), ("conversion", n_conv)):
            for _ in range(n):
                add(unit, variant, kind)
        if cov_share >= 1.0 or rng.random() < cov_share:
            add(unit, variant, "covariate", x)
        else:
            x = math.nan
        d = per_unit[variant]
        d["e"].append(n_exp)
        d["c"].append(n_click)
        d["v"].append(n_conv)
        d["x"].append(x)
    arrays = {
        v: {m: np.asarray(col, dtype=float) for m, col in d.items()} for v, d in per_unit.items()
    }
    return events, arrays


@pytest.fixture(scope="module")
def simulated() -> tuple[list[Event], dict[str, dict[str, np.ndarray]]]:
    return _simulate()


def _delta_ratio(c: np.ndarray, e: np.ndarray) -> tuple[float, float]:
    """Ratio of sums and its delta-method variance, written out independently."""
    n = len(c)
    r = c.sum() / e.sum()
    cov = np.cov(c, e, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (e.mean() ** 2) / n
    return r, var


def test_analysis_matches_independent_statistics(
    store: EventStore, simulated: tuple[list[Event], dict[str, dict[str, np.ndarray]]]
) -> None:
    events, ref = simulated
    assert store.append(events) == len(events)
    res = analyze(store, _spec())
    c, t = ref["control"], ref["lm"]

    # per-variant counts
    by_name = {v.variant: v for v in res.variants}
    for name, d in ref.items():
        v = by_name[name]
        tot = v.totals
        assert v.n == len(d["e"]) and tot["exposures"] == d["e"].sum()
        assert tot["clicks"] == d["c"].sum() and tot["conversions"] == d["v"].sum()
        assert tot["units_with_covariate"] == len(d["x"])
        assert v.means["ctr"] == pytest.approx(d["c"].sum() / d["e"].sum())

    # SRM: scipy chi-square on unit counts against 50/50
    assert res.srm is not None
    counts = [len(c["e"]), len(t["e"])]
    assert res.srm.p_value == pytest.approx(stats.chisquare(counts).pvalue, rel=1e-9)
    assert not res.srm.mismatch

    (cmp,) = res.comparisons
    tests = {mt.metric: mt for mt in cmp.tests}

    # CTR: delta method by hand, z-test
    rc, vc = _delta_ratio(c["c"], c["e"])
    rt, vt = _delta_ratio(t["c"], t["e"])
    diff, se = rt - rc, np.sqrt(vc + vt)
    ctr = tests["ctr"].result
    assert ctr.absolute.estimate == pytest.approx(diff, rel=1e-9)
    assert ctr.absolute.low == pytest.approx(diff - stats.norm.ppf(0.975) * se, rel=1e-6)
    assert ctr.p_value == pytest.approx(2 * stats.norm.sf(abs(diff / se)), rel=1e-6)
    # the known effect is found and covered
    assert ctr.p_value < 0.01 and ctr.absolute.low < 0.03 < ctr.absolute.high
    assert cmp.primary is not None and cmp.primary.metric == "ctr"

    # per-unit means: scipy Welch
    for metric, col in (
        ("clicks_per_unit", "c"),
        ("conversions_per_unit", "v"),
        ("exposures_per_unit", "e"),
    ):
        ref_t = stats.ttest_ind(t[col], c[col], equal_var=False)
        got = tests[metric].result
        assert got.p_value == pytest.approx(ref_t.pvalue, rel=1e-6), metric
        assert got.absolute.estimate == pytest.approx(t[col].mean() - c[col].mean(), rel=1e-9)
        lo, hi = ref_t.confidence_interval(0.95)
        assert (got.absolute.low, got.absolute.high) == pytest.approx((lo, hi), rel=1e-6)

    # Holm across all fixed-horizon tests: statsmodels
    raw = [mt.result.p_value for mt in cmp.tests]
    expected_holm = multipletests(raw, method="holm")[1]
    np.testing.assert_allclose([mt.p_value_holm for mt in cmp.tests], expected_holm, rtol=1e-12)
    expected_bh = multipletests(raw, method="fdr_bh")[1]
    np.testing.assert_allclose([mt.p_value_bh for mt in cmp.tests], expected_bh, rtol=1e-12)
    assert [mt.significant for mt in cmp.tests] == list(expected_holm < 0.05)
    # the typed results survive the JSON round trip of the results endpoint
    back = ExperimentResults.parse(res.to_json())
    assert back.to_dict() == res.to_dict()
    assert ExperimentResults.parse(json.loads(json.dumps(res.to_dict()))).to_dict() == res.to_dict()

    # CUPED on clicks per unit: theta pooled, then Welch on adjusted values (scipy)
    x_all = np.concatenate([c["x"], t["x"]])
    y_all = np.concatenate([c["c"], t["c"]])
    theta = np.cov(y_all, x_all, ddof=1)[0, 1] / np.var(x_all, ddof=1)
    adj = stats.ttest_ind(t["c"] - theta * t["x"], c["c"] - theta * c["x"], equal_var=False)
    cuped = cmp.cuped_clicks_per_unit
    assert cuped is not None
    assert cuped.p_value == pytest.approx(adj.pvalue, rel=1e-6)
    plain = stats.ttest_ind(t["c"], c["c"], equal_var=False)
    var_plain = c["c"].var(ddof=1) / len(c["c"]) + t["c"].var(ddof=1) / len(t["c"])
    var_adj = (c["c"] - theta * c["x"]).var(ddof=1) / len(c["c"]) + (t["c"] - theta * t["x"]).var(
        ddof=1
    ) / len(t["c"])
    assert cuped.variance_reduction == pytest.approx(1 - var_adj / var_plain, rel=1e-6)
    assert cuped.variance_reduction is not None and cuped.variance_reduction > 0.1
    assert cuped.std_error is not None and cuped.std_error < np.sqrt(var_plain)
    assert plain.pvalue < 0.05  # the lift is visible without CUPED too

    # sequential CTR: same estimate, always-valid CI wider than the fixed-horizon one
    seq = cmp.sequential_ctr
    assert seq is not None
    assert seq.estimate == pytest.approx(diff, rel=1e-9)
    assert seq.ci.low < ctr.absolute.low and seq.ci.high > ctr.absolute.high
    assert seq.p_value >= ctr.p_value

    # guardrail: the fixed-horizon Welch CI is kept for information; the verdict uses the
    # always-valid CI, which is wider
    (guard,) = cmp.guardrails
    lo, hi = stats.ttest_ind(t["e"], c["e"], equal_var=False).confidence_interval(1 - 0.05)
    assert guard.metric == "exposures_per_unit" and guard.fixed_horizon is not None
    assert (guard.fixed_horizon.low, guard.fixed_horizon.high) == pytest.approx((lo, hi), rel=1e-6)
    assert guard.estimate == pytest.approx(t["e"].mean() - c["e"].mean(), rel=1e-9)
    assert guard.low < lo and guard.high > hi
    assert guard.passed == (guard.high >= 0)

    # JSON-ready
    payload = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert payload["experiment"] == "recs" and payload["srm"]["mismatch"] is False
    assert payload["comparisons"][0]["primary"]["result"]["metric"] == "ctr"


def _exposures(store: EventStore, split: dict[str, int], exp: str = "recs") -> None:
    events = []
    for variant, n in split.items():
        for i in range(n):
            events.append(
                Event(
                    event_id=f"{exp}-{variant}-{i}",
                    experiment=exp,
                    variant=variant,
                    unit_id=f"{variant}-{i}",
                    type="exposure",
                )
            )
    store.append(events)


def test_srm_alarm_and_guardrail_failure(store: EventStore) -> None:
    # 600 vs 400 units against a 50/50 split; treatment units see fewer exposures
    _exposures(store, {"control": 600, "lm": 400})
    extra = [
        Event(
            event_id=f"x{i}",
            experiment="recs",
            variant="control",
            unit_id=f"control-{i}",
            type="exposure",
        )
        for i in range(300)
    ]
    store.append(extra)
    res = analyze(store, _spec())
    assert res.srm is not None and res.srm.mismatch
    assert res.srm.p_value == pytest.approx(stats.chisquare([600, 400]).pvalue)
    assert any("sample-ratio mismatch" in n for n in res.notes)
    (guard,) = res.comparisons[0].guardrails
    assert not guard.passed and guard.high < 0


def test_sparse_and_empty_experiments_do_not_raise(store: EventStore) -> None:
    res = analyze(store, _spec())
    assert res.srm is None and all(v.n == 0 for v in res.variants)
    assert res.comparisons[0].tests == () and res.comparisons[0].sequential_ctr is None
    json.dumps(res.to_dict(), allow_nan=False)
    _exposures(store, {"control": 1, "ghost": 2})
    res = analyze(store, _spec(alpha=0.1), alpha=0.2)
    assert res.alpha == 0.2
    assert any("ghost" in n for n in res.notes)
    assert res.comparisons[0].notes  # not enough data is explained, not raised
    json.dumps(res.to_dict(), allow_nan=False)


def test_three_variants_and_holm_over_all_comparisons(store: EventStore) -> None:
    spec = _spec(
        variants=[
            {"name": "control", "model": "pop"},
            {"name": "a", "model": "ease"},
            {"name": "b", "model": "lm"},
        ],
        primary_metric="clicks_per_unit",
    )
    rng = np.random.default_rng(3)
    events = []
    k = 0
    for u in range(300):
        variant = ["control", "a", "b"][u % 3]
        for kind, n in (("exposure", 3), ("click", int(rng.integers(0, 3)))):
            for _ in range(n):
                events.append(
                    Event(
                        event_id=f"e{k}",
                        experiment="recs",
                        variant=variant,
                        unit_id=f"u{u}",
                        type=kind,
                    )
                )
                k += 1
    store.append(events)
    res = analyze(store, spec)
    assert [c.treatment for c in res.comparisons] == ["a", "b"]
    raw = [mt.result.p_value for c in res.comparisons for mt in c.tests]
    adj = [mt.p_value_holm for c in res.comparisons for mt in c.tests]
    np.testing.assert_allclose(adj, multipletests(raw, method="holm")[1], rtol=1e-12)
    assert all(
        c.primary is not None and c.primary.metric == "clicks_per_unit" for c in res.comparisons
    )
    assert all(c.cuped_clicks_per_unit is None for c in res.comparisons)  # no covariates
    json.dumps(res.to_dict(), allow_nan=False)
    notes = [n for c in res.comparisons for n in c.notes]
    assert any("exposures_per_unit: not tested" in n for n in notes)  # zero variance


# --------------------------------------------------------------------------- sequential looks


def _staggered(
    seed: int, n_units: int, ctr: dict[str, float], exp: str = "recs"
) -> tuple[list[Event], list[tuple[datetime, str, str, int, int]]]:
    """Units entering over time (some at the same second), ids unrelated to entry order.

    Returns the events and, per unit, (entry time, unit id, variant, exposures, clicks).
    """
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    units: list[tuple[datetime, str, str, int, int]] = []
    entry_s = np.sort(rng.integers(0, n_units // 2, size=n_units))  # ~2 units per second
    for u in range(n_units):
        unit = f"u{rng.integers(10**9):09d}-{u}"
        variant = "control" if rng.random() < 0.5 else "lm"
        entry = T0 + timedelta(seconds=int(entry_s[u]))
        n_exp = 1 + int(rng.poisson(3))
        n_click = int(rng.binomial(n_exp, ctr[variant] * rng.lognormal(0.0, 0.4) / 1.08))
        for j in range(n_exp):
            events.append(
                Event(
                    event_id=f"{unit}:e{j}",
                    ts=entry + timedelta(seconds=3 * j),
                    experiment=exp,
                    variant=variant,
                    unit_id=unit,
                    type="exposure",
                )
            )
        for j in range(n_click):
            events.append(
                Event(
                    event_id=f"{unit}:c{j}",
                    ts=entry + timedelta(seconds=3 * j + 1),
                    experiment=exp,
                    variant=variant,
                    unit_id=unit,
                    type="click",
                )
            )
        units.append((entry, unit, variant, n_exp, n_click))
    return events, units


def _reference_looks(
    units: list[tuple[datetime, str, str, int, int]], look_every: int, target_n: int
) -> list[SequentialResult | None]:
    """Each look's own sequential result, from prefixes built here (None when untestable)."""
    ordered = sorted(units, key=lambda r: (r[0], r[1], r[2]))
    variant = np.array([r[2] for r in ordered])
    e = np.array([r[3] for r in ordered], dtype=float)
    c = np.array([r[4] for r in ordered], dtype=float)
    n = len(ordered)
    looks: list[SequentialResult | None] = []
    for end in [*range(look_every, n, look_every), n]:
        arms = []
        for name in ("control", "lm"):
            sel = variant[:end] == name
            arms.append(RatioStats.from_arrays(c[:end][sel], e[:end][sel]))
        try:
            looks.append(sequential_ratio_test(arms[0], arms[1], target_n=target_n, metric="ctr"))
        except StatsError:
            looks.append(None)
    return looks


@pytest.mark.parametrize("look_every", [37, 100])
def test_sequential_ctr_is_the_running_result_over_entry_ordered_looks(
    store: EventStore, look_every: int
) -> None:
    events, units = _staggered(5, 700, {"control": 0.10, "lm": 0.115})
    store.append(events)
    res = analyze(store, _spec(planned_units=2000), look_every=look_every)
    seq = res.comparisons[0].sequential_ctr
    assert seq is not None

    looks = _reference_looks(units, look_every, target_n=2000)
    tested = [r for r in looks if r is not None]
    assert seq.looks == len(looks) == math.ceil(len(units) / look_every)
    assert seq.looks_tested == len(tested) and seq.look_every == look_every
    p_min = min(r.p_value for r in tested)
    low = max(r.ci.low for r in tested)
    high = min(r.ci.high for r in tested)
    assert seq.p_value == pytest.approx(p_min, rel=1e-9)
    assert (seq.ci.low, seq.ci.high) == pytest.approx((low, high), rel=1e-9)
    assert seq.decision == ("reject" if p_min <= 0.05 else "continue")

    # the estimate and the last-look values are those of all units
    final = looks[-1]
    assert final is not None and seq.last_look is not None
    assert seq.estimate == pytest.approx(final.estimate, rel=1e-12)
    assert seq.last_look.p_value == pytest.approx(final.p_value, rel=1e-9)
    assert (seq.last_look.ci.low, seq.last_look.ci.high) == pytest.approx(
        (final.ci.low, final.ci.high), rel=1e-9
    )
    assert (seq.n_control, seq.n_treatment) == (final.n_control, final.n_treatment)
    # running minimum: never above the last look alone; here strictly below (data-dependent)
    assert seq.p_value <= seq.last_look.p_value
    assert seq.ci.low >= seq.last_look.ci.low and seq.ci.high <= seq.last_look.ci.high
    assert seq.p_value < seq.last_look.p_value

    # entry order matters: ordering units by id instead gives different looks
    by_id = _reference_looks([(T0, u[1], *u[2:]) for u in units], look_every, 2000)
    assert min(r.p_value for r in by_id if r is not None) != pytest.approx(p_min, rel=1e-6)

    payload = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    sc = payload["comparisons"][0]["sequential_ctr"]
    assert sc["looks"] == seq.looks and sc["look_every"] == look_every
    assert sc["p_value"] == pytest.approx(p_min) and sc["last_look"]["looks"] == 1


def test_look_schedule_from_spec_call_and_bad_values(store: EventStore) -> None:
    events, units = _staggered(8, 250, {"control": 0.2, "lm": 0.2})
    store.append(events)
    for spec_every, call_every, expected in ((None, None, 3), (60, None, 5), (60, 250, 1)):
        spec = _spec(sequential_look_every=spec_every)
        seq = analyze(store, spec, look_every=call_every).comparisons[0].sequential_ctr
        assert seq is not None and seq.looks == expected, (spec_every, call_every)
    # one look at all units is exactly the single-look test
    seq = analyze(store, _spec(), look_every=10_000).comparisons[0].sequential_ctr
    (only,) = _reference_looks(units, 10_000, 10_000)
    assert seq is not None and only is not None and seq.looks == 1
    assert seq.p_value == pytest.approx(only.p_value, rel=1e-9)
    assert seq.last_look is not None and seq.last_look.p_value == seq.p_value
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ExperimentError, match="look_every"):
            analyze(store, _spec(), look_every=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        _spec(sequential_look_every=0)


def test_untestable_early_looks_are_skipped(store: EventStore) -> None:
    # the first 40 units never click: no variance, so those looks carry no evidence
    events, units = _staggered(9, 200, {"control": 0.15, "lm": 0.25})
    quiet = {u[1] for u in sorted(units)[:40]}
    events = [ev for ev in events if not (ev.unit_id in quiet and ev.type == "click")]
    units = [(*u[:4], 0 if u[1] in quiet else u[4]) for u in units]
    store.append(events)
    seq = analyze(store, _spec(), look_every=20).comparisons[0].sequential_ctr
    looks = _reference_looks(units, 20, 10_000)
    assert looks[0] is None and looks[1] is None and looks[-1] is not None
    assert seq is not None and seq.looks == 10 and seq.looks_tested == 8
    assert seq.p_value == pytest.approx(min(r.p_value for r in looks if r), rel=1e-9)
    assert any("2 early looks" in n for n in seq.notes)


# --------------------------------------------------------------------------- guardrails


def _reference_guardrail(
    variant: np.ndarray, values: np.ndarray, look_every: int, target_n: int
) -> tuple[float, float, float, int]:
    """Always-valid guardrail CI built here: numpy prefixes, one test per look, intersection.

    Returns (low, high, running-min p, looks tested).
    """
    n = len(values)
    low, high, p, tested = -math.inf, math.inf, 1.0, 0
    for end in [*range(look_every, n, look_every), n]:
        v, x = variant[:end], values[:end].astype(float)
        arms = [x[v == name] for name in ("control", "lm")]
        try:
            r = sequential_test(
                MeanStats(arms[0].size, arms[0].sum(), (arms[0] ** 2).sum()),
                MeanStats(arms[1].size, arms[1].sum(), (arms[1] ** 2).sum()),
                target_n=target_n,
            )
        except StatsError:
            continue
        low, high, p, tested = (
            max(low, r.ci.low),
            min(high, r.ci.high),
            min(p, r.p_value),
            tested + 1,
        )
    return low, high, p, tested


def _entering(rows: list[tuple[str, int]], exp: str = "recs") -> list[Event]:
    """Exposure events of units entering one per second, in the order of ``rows``."""
    return [
        Event(
            event_id=f"g{i}:{j}",
            ts=T0 + timedelta(seconds=i, milliseconds=j),
            experiment=exp,
            variant=variant,
            unit_id=f"unit-{(7919 * i) % 100_003:06d}",  # ids unrelated to entry order
            type="exposure",
        )
        for i, (variant, n_exp) in enumerate(rows)
        for j in range(n_exp)
    ]


def test_guardrail_verdict_is_the_always_valid_running_ci(store: EventStore) -> None:
    events, units = _staggered(21, 600, {"control": 0.1, "lm": 0.1})
    store.append(events)
    res = analyze(store, _spec(planned_units=1500), look_every=37)
    (guard,) = res.comparisons[0].guardrails
    ordered = sorted(units, key=lambda r: (r[0], r[1], r[2]))
    variant = np.array([r[2] for r in ordered])
    e = np.array([r[3] for r in ordered], dtype=float)
    low, high, p_min, tested = _reference_guardrail(variant, e, 37, target_n=1500)
    assert (guard.low, guard.high) == pytest.approx((low, high), rel=1e-9)
    assert guard.p_value == pytest.approx(p_min, rel=1e-9)
    assert guard.looks == math.ceil(600 / 37) and guard.looks_tested == tested
    assert guard.estimate == pytest.approx(
        e[variant == "lm"].mean() - e[variant == "control"].mean(), rel=1e-9
    )
    assert guard.passed == (high >= 0) and guard.passed  # no real effect here
    payload = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    g = payload["comparisons"][0]["guardrails"][0]
    assert g["passed"] is True and g["fixed_horizon"]["p_value"] == pytest.approx(
        stats.ttest_ind(e[variant == "lm"], e[variant == "control"], equal_var=False).pvalue,
        rel=1e-6,
    )


def test_guardrail_with_a_large_drop_fails(store: EventStore) -> None:
    control = np.tile([2, 3, 4, 5, 6], 40)
    treatment = np.tile([1, 1, 2, 3, 4], 40)  # 1.8 fewer exposures per unit
    rows = [
        r
        for c, t in zip(control, treatment, strict=True)
        for r in (("control", int(c)), ("lm", int(t)))
    ]
    store.append(_entering(rows))
    (guard,) = analyze(store, _spec(), look_every=50).comparisons[0].guardrails
    variant = np.array([r[0] for r in rows])
    values = np.array([r[1] for r in rows])
    low, high, p_min, _ = _reference_guardrail(variant, values, 50, target_n=10_000)
    assert high < 0 and (guard.low, guard.high) == pytest.approx((low, high), rel=1e-9)
    assert not guard.passed and guard.p_value == pytest.approx(p_min, rel=1e-9) and p_min < 0.05
    assert guard.estimate == pytest.approx(-1.8)


def test_fixed_horizon_drop_at_an_early_stop_does_not_fail_the_guardrail(
    store: EventStore,
) -> None:
    # a modest drop: the fixed-horizon Welch CI lies below 0, the always-valid one does not
    control = np.tile([2, 3, 4, 5, 6], 40)
    treatment = control.copy()
    treatment[::2] -= 1
    rows = [
        r
        for c, t in zip(control, treatment, strict=True)
        for r in (("control", int(c)), ("lm", int(t)))
    ]
    store.append(_entering(rows))
    fixed_ci = stats.ttest_ind(treatment, control, equal_var=False).confidence_interval(0.95)
    variant = np.array([r[0] for r in rows])
    low, high, _, _ = _reference_guardrail(variant, np.array([r[1] for r in rows]), 50, 10_000)
    assert fixed_ci.high < 0 <= high  # the situation this test is about

    res = analyze(store, _spec(), look_every=50)
    (guard,) = res.comparisons[0].guardrails
    assert guard.fixed_horizon is not None
    assert guard.fixed_horizon.high == pytest.approx(fixed_ci.high, rel=1e-6)
    assert guard.fixed_horizon.high < 0  # the old rule would have failed it
    assert (guard.low, guard.high) == pytest.approx((low, high), rel=1e-9)
    assert guard.passed
    welch = next(mt for mt in res.comparisons[0].tests if mt.metric == "exposures_per_unit")
    assert welch.result.absolute.high < 0  # the fixed-horizon test itself is unchanged


def test_guardrails_on_every_tested_metric(store: EventStore) -> None:
    events, units = _staggered(22, 400, {"control": 0.1, "lm": 0.1})
    store.append(events)
    spec = _spec(guardrails=["ctr", "clicks_per_unit", "exposures_per_unit"])
    res = analyze(store, spec, look_every=50)
    cmp = res.comparisons[0]
    guards = {g.metric: g for g in cmp.guardrails}
    assert set(guards) == {"ctr", "clicks_per_unit", "exposures_per_unit"}
    seq = cmp.sequential_ctr
    assert seq is not None and (guards["ctr"].low, guards["ctr"].high) == (seq.ci.low, seq.ci.high)
    ordered = sorted(units, key=lambda r: (r[0], r[1], r[2]))
    variant = np.array([r[2] for r in ordered])
    clicks = np.array([r[4] for r in ordered])
    low, high, _, _ = _reference_guardrail(variant, clicks, 50, 10_000)
    g = guards["clicks_per_unit"]
    assert (g.low, g.high) == pytest.approx((low, high), rel=1e-9)


STORE_METRICS = [
    MetricSpec("ctr", "ratio", "clicks", "exposures"),
    MetricSpec("clicks_per_unit", "mean", "clicks"),
    MetricSpec("conversions_per_unit", "mean", "conversions"),
    MetricSpec("exposures_per_unit", "mean", "exposures"),
    MetricSpec("clicks_cuped", "mean", "clicks", covariate="covariate"),
]


def _columns(ref: dict[str, dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    names = {"e": "exposures", "c": "clicks", "v": "conversions", "x": "covariate"}
    cols = {names[k]: np.concatenate([ref[v][k] for v in ref]) for k in names}
    variants = np.concatenate([np.full(len(ref[v]["e"]), v) for v in ref])
    return cols, variants


def test_csv_and_store_paths_give_the_same_comparisons(store: EventStore) -> None:
    """The same per-unit data through numpy (CSV path) and SQL (store path): same results."""
    events, ref = _simulate(seed=5, cov_share=0.6)
    assert store.append(events) == len(events)
    cols, variants = _columns(ref)
    kw = {"control": "control", "metrics": STORE_METRICS, "weights": {"control": 1, "lm": 1}}
    from_csv = st.analyze(column_source(cols, variants), **kw)  # type: ignore[arg-type]
    from_sql = st.analyze(store.source("recs"), **kw)  # type: ignore[arg-type]
    _close(from_sql.to_dict(), from_csv.to_dict())

    # CUPED is restricted to the units with a covariate: scipy Welch on adjusted values
    c, t = ref["control"], ref["lm"]
    mc, mt = ~np.isnan(c["x"]), ~np.isnan(t["x"])
    x_all = np.concatenate([c["x"][mc], t["x"][mt]])
    y_all = np.concatenate([c["c"][mc], t["c"][mt]])
    theta = np.cov(y_all, x_all, ddof=1)[0, 1] / np.var(x_all, ddof=1)
    adj = stats.ttest_ind(
        t["c"][mt] - theta * t["x"][mt], c["c"][mc] - theta * c["x"][mc], equal_var=False
    )
    cuped = next(cmp for cmp in from_sql.comparisons if cmp.metric == "clicks_cuped")
    assert cuped.result.p_value == pytest.approx(adj.pvalue, rel=1e-6)  # type: ignore[union-attr]

    # the store analysis reports the engine's comparisons (the same type, the same numbers)
    res = analyze(store, _spec())
    (tc,) = res.comparisons
    # (the Holm/BH family of the store analysis is its four metrics, without CUPED)
    fixed = st.analyze(column_source(cols, variants), **{**kw, "metrics": STORE_METRICS[:4]})  # type: ignore[arg-type]
    csv_by_metric = {cmp.metric: cmp for cmp in (*fixed.comparisons, *from_csv.comparisons[4:])}
    assert [c.metric for c in tc.tests] == [m.name for m in STORE_METRICS[:4]]
    for got in tc.tests:
        want = csv_by_metric[got.metric]
        assert type(got) is type(want)
        _close(got.to_dict(), want.to_dict())
    assert tc.cuped_clicks_per_unit is not None
    want_cuped = csv_by_metric["clicks_cuped"].result.to_dict()
    _close(tc.cuped_clicks_per_unit.to_dict(), {**want_cuped, "metric": "clicks_per_unit"})
    assert any("60%" in n or "% of units" in n for n in tc.notes)


def _close(a: object, b: object, rel: float = 1e-9) -> None:
    """Recursive equality with a relative tolerance on floats (None for NaN on both sides)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), (sorted(a), sorted(b))
        for k in a:
            _close(a[k], b[k], rel)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y, rel)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-12)
    else:
        assert a == b


@pytest.mark.parametrize("target", ["cuped_test", "sequential_ctr", "compare"])
def test_a_bug_in_the_statistics_propagates(
    store: EventStore,
    simulated: tuple[list[Event], dict[str, dict[str, np.ndarray]]],
    monkeypatch: pytest.MonkeyPatch,
    target: str,
) -> None:
    """Only NotTestableError becomes a "not tested" note; a bug surfaces as itself."""
    events, _ = simulated
    assert store.append(events) == len(events)

    def bug(*_a: object, **_k: object) -> None:
        raise TypeError("injected bug")

    monkeypatch.setattr(exp_analysis, target, bug)
    with pytest.raises(TypeError, match="injected bug"):
        analyze(store, _spec())


def test_not_testable_becomes_a_note(
    store: EventStore,
    simulated: tuple[list[Event], dict[str, dict[str, np.ndarray]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, _ = simulated
    assert store.append(events) == len(events)

    def untestable(*_a: object, **_k: object) -> None:
        raise NotTestableError("too few units")

    monkeypatch.setattr(exp_analysis, "cuped_test", untestable)
    monkeypatch.setattr(st.analysis, "welch_ttest", untestable)
    res = analyze(store, _spec())
    (tc,) = res.comparisons
    assert tc.cuped_clicks_per_unit is None
    assert [c.metric for c in tc.tests] == ["ctr"]
    assert "CUPED: not tested (too few units)" in tc.notes
    assert "clicks_per_unit: not tested (too few units)" in tc.notes


def test_a_bug_in_an_early_look_propagates(
    store: EventStore,
    simulated: tuple[list[Event], dict[str, dict[str, np.ndarray]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Early looks skip only NotTestableError; a bug at any look surfaces."""
    import abrec.stats.sequential as seq_mod

    events, _ = simulated
    assert store.append(events) == len(events)
    real = seq_mod.sequential_ratio_test
    calls = {"n": 0}

    def first_call_buggy(*a: object, **k: object) -> SequentialResult:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TypeError("injected bug")
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(seq_mod, "sequential_ratio_test", first_call_buggy)
    with pytest.raises(TypeError, match="injected bug"):
        analyze(store, _spec())


def test_a_guardrail_fails_only_when_its_ci_lies_below_zero() -> None:
    """The boundary: an always-valid CI that reaches 0 is not a significant drop."""
    from abrec.experiment.analysis import RunningSequentialResult, _guardrail

    def seq(high: float) -> RunningSequentialResult:
        return RunningSequentialResult(
            method="m", metric="exposures_per_unit", estimate=high - 1.0,
            ci=Interval(high - 1.0, high - 2.0, high), p_value=0.5, decision="continue",
            n_control=10, n_treatment=10, alpha=0.05, rho=0.1, control_mean=2.0,
        )  # fmt: skip

    assert _guardrail("exposures_per_unit", seq(0.0), None).passed
    assert not _guardrail("exposures_per_unit", seq(-1e-12), None).passed
    assert _guardrail("exposures_per_unit", seq(1e-12), None).passed
