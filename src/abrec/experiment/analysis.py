"""Analysis of a stored experiment: per-variant metrics, SRM, effects with CIs, CUPED, guardrails.

Everything is computed from per-variant sufficient statistics aggregated in SQL
(:meth:`abrec.store.EventStore.variant_summary`), except the sequential CTR test and the
guardrails, which run always-valid tests over looks at entry-ordered prefixes of the
per-unit rows (:meth:`abrec.store.EventStore.unit_frame`), so they stay valid when the
experiment is stopped at a data-dependent time; the statistics come from :mod:`abrec.stats`.
Units are the experiment's ``unit_id`` values with at least one exposure; all metrics are
"higher is better".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from abrec.errors import ExperimentError
from abrec.experiment.spec import ExperimentSpec
from abrec.stats import (
    CupedStats,
    EffectResult,
    MeanStats,
    RatioStats,
    SequentialMonitor,
    SequentialResult,
    SRMResult,
    StatsError,
    cuped_test,
    holm,
    ratio_test,
    srm_test,
    welch_ttest,
)
from abrec.stats.errors import StatsInputError
from abrec.stats.results import ToDictMixin
from abrec.store.events import VariantSummary
from abrec.store.sql import EventStore

SRM_THRESHOLD = 0.001
#: Units between two looks of the sequential CTR test when neither the call nor the spec says.
DEFAULT_LOOK_EVERY = 100
#: Guardrails checked when a spec names none.
DEFAULT_GUARDRAILS: tuple[str, ...] = ("exposures_per_unit",)
#: Fixed-horizon metrics tested for every treatment (Holm-corrected together).
TESTED_METRICS: tuple[str, ...] = (
    "ctr",
    "clicks_per_unit",
    "conversions_per_unit",
    "exposures_per_unit",
)


@dataclass(frozen=True)
class VariantResult(ToDictMixin):
    """Observed counts and metric values of one variant."""

    name: str
    model: str
    weight: float
    units: int
    exposures: int
    clicks: int
    conversions: int
    ctr: float | None
    clicks_per_unit: float | None
    conversions_per_unit: float | None
    exposures_per_unit: float | None
    units_with_covariate: int


@dataclass(frozen=True)
class MetricTest(ToDictMixin):
    """A fixed-horizon test of one metric, with its Holm-adjusted p-value."""

    metric: str
    result: EffectResult
    p_value_holm: float
    significant: bool


@dataclass(frozen=True)
class FixedHorizonCI(ToDictMixin):
    """A fixed-horizon (Welch / delta-method) CI, valid only at a horizon fixed in advance."""

    estimate: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class GuardrailResult(ToDictMixin):
    """A guardrail fails when its always-valid CI lies entirely below 0 (a significant drop).

    ``low``/``high`` are the running intersection of the confidence sequences over the
    looks (valid at any data-dependent stopping time) and ``p_value`` the running minimum
    of the always-valid p-values; ``estimate`` and ``relative`` use all units.
    ``fixed_horizon`` holds the fixed-horizon CI for information only: it is not valid
    after peeking and does not decide ``passed``.
    """

    metric: str
    estimate: float
    low: float
    high: float
    relative: float
    p_value: float
    passed: bool
    method: str = "always-valid confidence sequence"
    looks: int = 0
    looks_tested: int = 0
    fixed_horizon: FixedHorizonCI | None = None


@dataclass(frozen=True)
class RunningSequentialResult(SequentialResult):
    """The sequential CTR test over looks at every ``look_every`` units in entry order.

    ``estimate`` is the last look's; ``ci`` is the intersection of the confidence sequences
    of all looks, ``p_value`` their running minimum and ``decision`` follows it. ``looks``
    counts the scheduled looks, ``looks_tested`` those with enough data for the test, and
    ``last_look`` is the last look's own result (all units, not intersected).
    """

    look_every: int = DEFAULT_LOOK_EVERY
    looks_tested: int = 0
    last_look: SequentialResult | None = None


@dataclass(frozen=True)
class Comparison(ToDictMixin):
    """One treatment against the control."""

    treatment: str
    control: str
    primary: MetricTest | None
    tests: tuple[MetricTest, ...]
    sequential_ctr: RunningSequentialResult | None
    cuped_clicks_per_unit: EffectResult | None
    guardrails: tuple[GuardrailResult, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ExperimentResults(ToDictMixin):
    """Everything ``GET /v1/experiments/{id}/results`` reports."""

    experiment: str
    status: str
    control: str
    alpha: float
    primary_metric: str
    variants: tuple[VariantResult, ...]
    srm: SRMResult | None
    comparisons: tuple[Comparison, ...]
    notes: tuple[str, ...]


def _div(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _empty(variant: str) -> VariantSummary:
    return VariantSummary(variant, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _mean_stats(s: VariantSummary, metric: str) -> MeanStats:
    if metric == "clicks_per_unit":
        return MeanStats(s.n_units, s.sum_clicks, s.sum_sq_clicks)
    if metric == "conversions_per_unit":
        return MeanStats(s.n_units, s.sum_conversions, s.sum_sq_conversions)
    if metric == "exposures_per_unit":
        return MeanStats(s.n_units, s.sum_exposures, s.sum_sq_exposures)
    raise ValueError(f"{metric} is not a per-unit mean metric")  # pragma: no cover


def _ratio_stats(s: VariantSummary) -> RatioStats:
    return RatioStats(
        s.n_units,
        s.sum_clicks,
        s.sum_sq_clicks,
        s.sum_exposures,
        s.sum_sq_exposures,
        s.sum_clicks_exposures,
    )


def _cuped_stats(s: VariantSummary) -> CupedStats:
    return CupedStats(
        s.n_covariate, s.cov_sum_clicks, s.cov_sum_sq_clicks, s.sum_x, s.sum_sq_x, s.sum_x_clicks
    )


def _fixed(metric: str, c: VariantSummary, t: VariantSummary, alpha: float) -> EffectResult:
    if metric == "ctr":
        return ratio_test(_ratio_stats(c), _ratio_stats(t), alpha=alpha, metric="ctr")
    return welch_ttest(_mean_stats(c, metric), _mean_stats(t, metric), alpha=alpha, metric=metric)


def _variant_result(spec: ExperimentSpec, s: VariantSummary) -> VariantResult:
    v = spec.variant(s.variant)
    return VariantResult(
        name=v.name,
        model=v.model,
        weight=v.weight,
        units=s.n_units,
        exposures=s.exposures,
        clicks=s.clicks,
        conversions=s.conversions,
        ctr=_div(s.clicks, s.exposures),
        clicks_per_unit=_div(s.sum_clicks, s.n_units),
        conversions_per_unit=_div(s.sum_conversions, s.n_units),
        exposures_per_unit=_div(s.sum_exposures, s.n_units),
        units_with_covariate=s.n_covariate,
    )


def _srm(
    spec: ExperimentSpec, summaries: dict[str, VariantSummary]
) -> tuple[SRMResult | None, list[str]]:
    names = [v.name for v in spec.variants if v.weight > 0]
    observed = [summaries[n].n_units for n in names]
    notes: list[str] = []
    zero_weight = [v.name for v in spec.variants if v.weight == 0 and summaries[v.name].n_units]
    if zero_weight:
        notes.append(f"variants {zero_weight} have weight 0 but exposed units; left out of SRM")
    if len(names) < 2 or sum(observed) == 0:
        notes.append("SRM not computed: no exposed units yet")
        return None, notes
    res = srm_test(observed, [spec.variant(n).weight for n in names], threshold=SRM_THRESHOLD)
    if res.mismatch:
        notes.append(
            f"sample-ratio mismatch (p={res.p_value:.2g} < {SRM_THRESHOLD}): the observed split "
            "does not match the weights; investigate assignment/logging before trusting effects"
        )
    return res, notes


@dataclass(frozen=True)
class EntryOrder:
    """Exposed units of the analysed variants in entry order, and the look schedule.

    Attributes:
        variant, clicks, exposures, conversions: one entry per (variant, unit), sorted by
            the unit's first event (``first_ts``), ties broken by unit id then variant.
        ends: units entered at each look: every ``look_every`` units, plus all units.
    """

    variant: npt.NDArray[np.str_]
    clicks: npt.NDArray[np.int64]
    exposures: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    look_every: int
    conversions: npt.NDArray[np.int64] = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )

    @property
    def n_units(self) -> int:
        """Units in the order (each look is a prefix of it)."""
        return int(self.variant.size)


def entry_order(store: EventStore, spec: ExperimentSpec, look_every: int) -> EntryOrder:
    """Sort the experiment's exposed units by entry and place a look every ``look_every``."""
    f = store.unit_frame(spec.id)
    variant = f["variant"].astype(str)
    keep = (f["exposures"] > 0) & np.isin(variant, spec.variant_names)
    ts = f["first_ts"][keep]
    ts_key = np.where(np.isnat(ts), np.iinfo(np.int64).max, ts.astype(np.int64))
    unit = f["unit_id"][keep].astype(str)
    order = np.lexsort((variant[keep], unit, ts_key))
    n = int(order.size)
    ends = np.arange(look_every, n, look_every, dtype=np.int64)
    if n:
        ends = np.append(ends, np.int64(n))
    return EntryOrder(
        variant=variant[keep][order],
        clicks=f["clicks"][keep][order].astype(np.int64),
        exposures=f["exposures"][keep][order].astype(np.int64),
        ends=ends,
        look_every=look_every,
        conversions=f["conversions"][keep][order].astype(np.int64),
    )


def prefix_ratio_stats(order: EntryOrder, variant: str) -> list[RatioStats]:
    """CTR sufficient statistics of ``variant``'s units entered by each look (cumulative sums)."""
    m = (order.variant == variant).astype(np.int64)
    c, e = order.clicks * m, order.exposures * m
    sums = np.cumsum(np.stack([m, c, c * c, e, e * e, c * e]), axis=1)[:, order.ends - 1]
    return [
        RatioStats(int(n), float(sc), float(scc), float(se), float(see), float(sce))
        for n, sc, scc, se, see, sce in sums.T.tolist()
    ]


def prefix_mean_stats(order: EntryOrder, variant: str, metric: str) -> list[MeanStats]:
    """Per-unit mean statistics of ``metric`` for ``variant``'s units entered by each look.

    Raises:
        ExperimentError: when ``metric`` is not a per-unit mean metric.
    """
    columns = {
        "clicks_per_unit": order.clicks,
        "conversions_per_unit": order.conversions,
        "exposures_per_unit": order.exposures,
    }
    if metric not in columns:
        raise ExperimentError(
            f"{metric!r} is not a per-unit mean metric; use one of {sorted(columns)}"
        )
    m = (order.variant == variant).astype(np.int64)
    x = columns[metric] * m
    sums = np.cumsum(np.stack([m, x, x * x]), axis=1)[:, order.ends - 1]
    return [MeanStats(int(n), float(s), float(ss)) for n, s, ss in sums.T.tolist()]


def _running(
    order: EntryOrder,
    cs: Sequence[MeanStats | RatioStats],
    ts: Sequence[MeanStats | RatioStats],
    *,
    alpha: float,
    target_n: int,
    metric: str,
) -> RunningSequentialResult:
    """Run a :class:`SequentialMonitor` over the looks' prefixes (untestable looks skipped)."""
    monitor = SequentialMonitor(alpha=alpha, target_n=target_n, metric=metric)
    for c, t in zip(cs[:-1], ts[:-1], strict=True):
        try:
            monitor.update(c, t)
        except (StatsError, ArithmeticError, ValueError):
            continue
    running = monitor.update(cs[-1], ts[-1])
    last = monitor.last_look
    assert last is not None  # update() just recorded it
    notes = running.notes
    skipped = order.ends.size - monitor.looks
    if skipped:
        notes = (*notes, f"{skipped} early looks had too few units or no variance; skipped")
    base = {f.name: getattr(running, f.name) for f in dataclasses.fields(SequentialResult)}
    base.update(looks=int(order.ends.size), notes=notes)
    return RunningSequentialResult(
        **base, look_every=order.look_every, looks_tested=monitor.looks, last_look=last
    )


def sequential_ctr(
    order: EntryOrder, control: str, treatment: str, *, alpha: float, target_n: int
) -> RunningSequentialResult:
    """Always-valid CTR test run over the scheduled looks: running-min p, intersected CI.

    Looks where the test is undefined (fewer than 2 units in an arm, no variance yet)
    are skipped; they carry no evidence and skipping looks keeps the guarantee.

    Raises:
        StatsError: when the last look (all units) cannot be tested.
    """
    if order.n_units == 0:
        raise StatsInputError("no exposed units yet")
    cs, ts = prefix_ratio_stats(order, control), prefix_ratio_stats(order, treatment)
    return _running(order, cs, ts, alpha=alpha, target_n=target_n, metric="ctr")


def sequential_metric(
    order: EntryOrder,
    control: str,
    treatment: str,
    metric: str,
    *,
    alpha: float,
    target_n: int,
) -> RunningSequentialResult:
    """Always-valid test of any tested metric over the looks (CTR or a per-unit mean).

    Per-unit means use :func:`abrec.stats.sequential_test` on :class:`MeanStats` prefixes;
    the result is the running intersection of the confidence sequences over the looks.

    Raises:
        StatsError: when the last look (all units) cannot be tested.
        ExperimentError: when ``metric`` is not one of :data:`TESTED_METRICS`.
    """
    if metric == "ctr":
        return sequential_ctr(order, control, treatment, alpha=alpha, target_n=target_n)
    if order.n_units == 0:
        raise StatsInputError("no exposed units yet")
    cs = prefix_mean_stats(order, control, metric)
    ts = prefix_mean_stats(order, treatment, metric)
    return _running(order, cs, ts, alpha=alpha, target_n=target_n, metric=metric)


def _guardrail(
    metric: str, seq: RunningSequentialResult, fixed: EffectResult | None
) -> GuardrailResult:
    """Judge a guardrail on its always-valid CI; keep the fixed-horizon CI for information."""
    if fixed is not None:
        relative = fixed.relative.estimate
    else:
        relative = seq.estimate / seq.control_mean if seq.control_mean else math.nan
    return GuardrailResult(
        metric=metric,
        estimate=seq.estimate,
        low=seq.ci.low,
        high=seq.ci.high,
        relative=relative,
        p_value=seq.p_value,
        passed=not seq.ci.high < 0,
        looks=seq.looks,
        looks_tested=seq.looks_tested,
        fixed_horizon=None
        if fixed is None
        else FixedHorizonCI(
            fixed.absolute.estimate, fixed.absolute.low, fixed.absolute.high, fixed.p_value
        ),
    )


def _look_every(spec: ExperimentSpec, look_every: int | None) -> int:
    value = look_every if look_every is not None else spec.sequential_look_every
    if value is None:
        return DEFAULT_LOOK_EVERY
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ExperimentError(
            f"look_every must be a positive whole number of units, got {value!r}; "
            f"use e.g. {DEFAULT_LOOK_EVERY}"
        )
    return int(value)


def analyze(
    store: EventStore,
    spec: ExperimentSpec,
    *,
    alpha: float | None = None,
    look_every: int | None = None,
) -> ExperimentResults:
    """Analyse an experiment from the events in ``store``; never raises for sparse data.

    Per treatment vs control: CTR (ratio of sums, delta method), clicks/conversions/
    exposures per unit (Welch), Holm-adjusted p-values across those tests and all
    treatments, an always-valid sequential test of CTR over looks at every ``look_every``
    units in entry order (default: the spec's ``sequential_look_every``, else 100), CUPED on
    clicks per unit when covariate events exist, and guardrails judged on the same looks with
    always-valid CIs (a significant drop fails, even at a data-dependent stopping time).

    Raises:
        ExperimentError: when ``look_every`` is not a positive integer.
    """
    a = spec.alpha if alpha is None else float(alpha)
    every = _look_every(spec, look_every)
    raw = store.variant_summary(spec.id)
    summaries = {n: raw.get(n, _empty(n)) for n in spec.variant_names}
    notes: list[str] = []
    unknown = sorted(set(raw) - set(summaries))
    if unknown:
        notes.append(f"events for variants not in the spec were ignored: {unknown}")
    variants = tuple(_variant_result(spec, summaries[n]) for n in spec.variant_names)
    srm, srm_notes = _srm(spec, summaries)
    notes.extend(srm_notes)

    control = summaries[spec.control or spec.variant_names[0]]
    treatments = [n for n in spec.variant_names if n != control.variant]
    guardrail_names = tuple(spec.guardrails) or DEFAULT_GUARDRAILS
    order = entry_order(store, spec, every)

    # Fixed-horizon tests for every (treatment, metric), then Holm over the whole family.
    fixed: dict[tuple[str, str], EffectResult] = {}
    cmp_notes: dict[str, list[str]] = {t: [] for t in treatments}
    for t in treatments:
        for metric in TESTED_METRICS:
            try:
                fixed[(t, metric)] = _fixed(metric, control, summaries[t], a)
            except (StatsError, ArithmeticError, ValueError) as exc:
                cmp_notes[t].append(f"{metric}: not tested ({exc})")
    keys = list(fixed)
    adjusted = holm([fixed[k].p_value for k in keys]) if keys else np.zeros(0)
    holm_p = {k: float(p) for k, p in zip(keys, adjusted, strict=True)}

    comparisons = []
    for t in treatments:
        ts = summaries[t]
        tests = tuple(
            MetricTest(m, fixed[(t, m)], holm_p[(t, m)], holm_p[(t, m)] < a)
            for m in TESTED_METRICS
            if (t, m) in fixed
        )
        primary = next((mt for mt in tests if mt.metric == spec.primary_metric), None)
        seq: RunningSequentialResult | None = None
        try:
            seq = sequential_ctr(
                order, control.variant, t, alpha=a, target_n=spec.planned_units or 10_000
            )
        except (StatsError, ArithmeticError, ValueError) as exc:
            cmp_notes[t].append(f"sequential ctr: not tested ({exc})")
        cuped: EffectResult | None = None
        if control.n_covariate and ts.n_covariate:
            try:
                cuped = cuped_test(
                    _cuped_stats(control), _cuped_stats(ts), alpha=a, metric="clicks_per_unit"
                )
                covered = (control.n_covariate + ts.n_covariate) / max(
                    control.n_units + ts.n_units, 1
                )
                if covered < 1:
                    cmp_notes[t].append(
                        f"CUPED uses the {covered:.0%} of units that have a covariate event"
                    )
            except (StatsError, ArithmeticError, ValueError) as exc:
                cmp_notes[t].append(f"CUPED: not tested ({exc})")
        guards = []
        for g in guardrail_names:
            try:
                g_seq = seq if g == "ctr" and seq is not None else None
                if g_seq is None:
                    g_seq = sequential_metric(
                        order,
                        control.variant,
                        t,
                        g,
                        alpha=a,
                        target_n=spec.planned_units or 10_000,
                    )
            except (StatsError, ArithmeticError, ValueError) as exc:
                cmp_notes[t].append(f"guardrail {g}: not judged ({exc})")
                continue
            guards.append(_guardrail(g, g_seq, fixed.get((t, g))))
        comparisons.append(
            Comparison(
                treatment=t,
                control=control.variant,
                primary=primary,
                tests=tests,
                sequential_ctr=seq,
                cuped_clicks_per_unit=cuped,
                guardrails=tuple(guards),
                notes=tuple(cmp_notes[t]),
            )
        )
    return ExperimentResults(
        experiment=spec.id,
        status=spec.status,
        control=control.variant,
        alpha=a,
        primary_metric=spec.primary_metric,
        variants=variants,
        srm=srm,
        comparisons=tuple(comparisons),
        notes=tuple(notes),
    )
