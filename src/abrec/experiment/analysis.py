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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import TypeAdapter

from abrec.bandit import BanditAnalysis
from abrec.errors import ExperimentError
from abrec.experiment.adaptive import bandit_analysis, interleaving_analysis
from abrec.experiment.spec import METRICS, ExperimentSpec
from abrec.interleave import InterleavingResult
from abrec.stats import (
    SRM_THRESHOLD,
    Comparison,
    CupedStats,
    EffectResult,
    MeanStats,
    MetricSpec,
    NotTestableError,
    Num,
    RatioStats,
    SequentialMonitor,
    SequentialResult,
    SRMResult,
    Untested,
    VariantSummary,
    compare,
    cuped_test,
    metric_stats,
    srm_note,
    srm_test,
)
from abrec.stats.analysis import Stats
from abrec.stats.drift import DriftCheck
from abrec.stats.results import ToDictMixin
from abrec.store.sql import EventStore

#: Units between two looks of the sequential CTR test when neither the call nor the spec says.
DEFAULT_LOOK_EVERY = 100
_T = TypeVar("_T")

#: At most this many looks are kept in :attr:`RunningSequentialResult.history` (evenly
#: thinned, first and last always kept); the running result itself uses every look.
MAX_HISTORY = 200
#: Guardrails checked when a spec names none.
DEFAULT_GUARDRAILS: tuple[str, ...] = ("exposures_per_unit",)
#: How each of :data:`abrec.experiment.spec.METRICS` is computed from the per-unit columns
#: of the store; all are tested for every treatment (Holm-corrected together).
METRIC_SPECS: dict[str, MetricSpec] = {
    "ctr": MetricSpec("ctr", "ratio", "clicks", "exposures"),
    "clicks_per_unit": MetricSpec("clicks_per_unit", "mean", "clicks"),
    "conversions_per_unit": MetricSpec("conversions_per_unit", "mean", "conversions"),
    "exposures_per_unit": MetricSpec("exposures_per_unit", "mean", "exposures"),
}
assert tuple(METRIC_SPECS) == METRICS
#: CUPED on clicks per unit, over the units that have a covariate event.
CUPED_SPEC = MetricSpec("clicks_per_unit", "mean", "clicks", covariate="covariate")


@dataclass(frozen=True)
class FixedHorizonCI(ToDictMixin):
    """A fixed-horizon (Welch / delta-method) CI, valid only at a horizon fixed in advance."""

    estimate: Num
    low: Num
    high: Num
    p_value: Num


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
    estimate: Num
    low: Num
    high: Num
    relative: Num
    p_value: Num
    passed: bool
    method: str = "always-valid confidence sequence"
    looks: int = 0
    looks_tested: int = 0
    fixed_horizon: FixedHorizonCI | None = None


@dataclass(frozen=True)
class SequentialLook(ToDictMixin):
    """The running sequential test as it stood after one tested look (a chart point).

    ``units`` counts the exposed units (all analysed variants) entered by the look, ``at``
    is the first-event time of the last of them (ISO 8601, UTC; None when unknown),
    ``estimate`` and ``look_low``/``look_high`` are the look's own estimate and confidence
    sequence, ``low``/``high`` the running intersection up to this look and ``p_value`` the
    running minimum of the always-valid p-values.
    """

    units: int
    at: str | None
    estimate: Num
    low: Num
    high: Num
    look_low: Num
    look_high: Num
    p_value: Num


@dataclass(frozen=True)
class RunningSequentialResult(SequentialResult):
    """The sequential CTR test over looks at every ``look_every`` units in entry order.

    ``estimate`` is the last look's; ``ci`` is the intersection of the confidence sequences
    of all looks, ``p_value`` their running minimum and ``decision`` follows it. ``looks``
    counts the scheduled looks, ``looks_tested`` those with enough data for the test, and
    ``last_look`` is the last look's own result (all units, not intersected). ``history``
    is the running result after each tested look, in look order, thinned evenly to at most
    :data:`MAX_HISTORY` points (the first and the last look always kept).
    """

    look_every: int = DEFAULT_LOOK_EVERY
    looks_tested: int = 0
    last_look: SequentialResult | None = None
    history: tuple[SequentialLook, ...] = ()


@dataclass(frozen=True)
class TreatmentResult(ToDictMixin):
    """One treatment against the control: fixed-horizon tests, sequential CTR, CUPED, guardrails.

    ``tests`` are the engine's :class:`abrec.stats.Comparison` objects (Holm decides
    ``significant``; the Benjamini-Hochberg p-value is there too).
    """

    treatment: str
    control: str
    primary: Comparison | None
    tests: tuple[Comparison, ...]
    sequential_ctr: RunningSequentialResult | None
    cuped_clicks_per_unit: EffectResult | None
    guardrails: tuple[GuardrailResult, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ExperimentResults(ToDictMixin):
    """Everything ``GET /v1/experiments/{id}/results`` reports (its response model).

    NaN and infinite values are ``null`` in JSON and NaN again when parsed back.
    ``drift`` holds the service monitor's drift checks of the experiment's models
    (:class:`abrec.stats.drift.DriftCheck`); None when they were not computed (yet), and
    always None from :func:`analyze` itself.
    """

    experiment: str
    status: str
    control: str
    alpha: Num
    primary_metric: str
    variants: tuple[VariantSummary, ...]
    srm: SRMResult | None
    comparisons: tuple[TreatmentResult, ...]
    notes: tuple[str, ...]
    type: str = "ab"
    interleaving: InterleavingResult | None = None
    bandit: BanditAnalysis | None = None
    drift: tuple[DriftCheck, ...] | None = None

    @classmethod
    def parse(cls, data: str | bytes | Mapping[str, Any]) -> ExperimentResults:
        """Parse the results endpoint's JSON (text or decoded) back into this type.

        Raises:
            pydantic.ValidationError: when ``data`` is not a results document.
        """
        if isinstance(data, str | bytes):
            return RESULTS_ADAPTER.validate_json(data)
        return RESULTS_ADAPTER.validate_python(data)

    def to_json(self) -> str:
        """The JSON the results endpoint sends."""
        return RESULTS_ADAPTER.dump_json(self).decode()

    def comparison(self, treatment: str | None = None) -> TreatmentResult | None:
        """The result of ``treatment`` (the first treatment when None), if any."""
        for c in self.comparisons:
            if treatment is None or c.treatment == treatment:
                return c
        return None

    def variant(self, name: str) -> VariantSummary | None:
        """The summary of variant ``name``, if any."""
        return next((v for v in self.variants if v.variant == name), None)


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _variant_summary(
    spec: ExperimentSpec, name: str, stats: Mapping[str, Stats], cuped: Stats
) -> VariantSummary:
    ctr = stats["ctr"]
    assert isinstance(ctr, RatioStats)
    conv = stats["conversions_per_unit"]
    assert isinstance(conv, MeanStats)
    v = spec.variant(name)
    n = ctr.n
    return VariantSummary(
        variant=name,
        n=n,
        means={
            "ctr": _div(ctr.sum_num, ctr.sum_den),
            "clicks_per_unit": _div(ctr.sum_num, n),
            "conversions_per_unit": _div(conv.sum, n),
            "exposures_per_unit": _div(ctr.sum_den, n),
        },
        totals={
            "exposures": ctr.sum_den,
            "clicks": ctr.sum_num,
            "conversions": conv.sum,
            "units_with_covariate": float(cuped.n),
        },
        model=v.model,
        weight=v.weight,
    )


def _srm(spec: ExperimentSpec, units: Mapping[str, int]) -> tuple[SRMResult | None, list[str]]:
    if spec.type == "bandit":
        return None, [
            "SRM not computed: a bandit's weights change over time, so no fixed split is "
            "expected; each assignment's probability is logged instead"
        ]
    names = [v.name for v in spec.variants if v.weight > 0]
    observed = [units[n] for n in names]
    notes: list[str] = []
    zero_weight = [v.name for v in spec.variants if v.weight == 0 and units[v.name]]
    if zero_weight:
        notes.append(f"variants {zero_weight} have weight 0 but exposed units; left out of SRM")
    if len(names) < 2 or sum(observed) == 0:
        notes.append("SRM not computed: no exposed units yet")
        return None, notes
    res = srm_test(observed, [spec.variant(n).weight for n in names], threshold=SRM_THRESHOLD)
    note = srm_note(res)
    if note:
        notes.append(note)
    return res, notes


@dataclass(frozen=True)
class EntryOrder:
    """Exposed units of the analysed variants in entry order, and the look schedule.

    Attributes:
        variant, clicks, exposures, conversions: one entry per (variant, unit), sorted by
            the unit's first event (``first_ts``), ties broken by unit id then variant.
        ends: units entered at each look: every ``look_every`` units, plus all units.
        first_ts: each entry's first-event time (``datetime64[us]``, UTC; NaT when unknown).
    """

    variant: npt.NDArray[np.str_]
    clicks: npt.NDArray[np.int64]
    exposures: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    look_every: int
    conversions: npt.NDArray[np.int64] = dataclasses.field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    first_ts: npt.NDArray[np.datetime64] | None = None

    def look_time(self, end: int) -> str | None:
        """ISO 8601 (UTC) first-event time of the last unit entered by the look ending at
        ``end`` units; None when the times are unknown."""
        if self.first_ts is None or not 0 < end <= self.first_ts.size:
            return None
        ts = self.first_ts[end - 1]
        return None if np.isnat(ts) else f"{np.datetime_as_string(ts, unit='s')}Z"

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
        first_ts=ts[order],
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
    history: list[SequentialLook] = []

    def look(i: int) -> SequentialResult:
        running = monitor.update(cs[i], ts[i])
        own = monitor.last_look
        assert own is not None  # update() just recorded it
        end = int(order.ends[i])
        history.append(SequentialLook(
            units=end, at=order.look_time(end), estimate=own.estimate,
            low=running.ci.low, high=running.ci.high,
            look_low=own.ci.low, look_high=own.ci.high, p_value=running.p_value,
        ))  # fmt: skip
        return running

    for i in range(len(cs) - 1):
        try:
            look(i)
        except NotTestableError:
            continue
    running = look(len(cs) - 1)
    last = monitor.last_look
    assert last is not None
    notes = running.notes
    skipped = order.ends.size - monitor.looks
    if skipped:
        notes = (*notes, f"{skipped} early looks had too few units or no variance; skipped")
    base = {f.name: getattr(running, f.name) for f in dataclasses.fields(SequentialResult)}
    base.update(looks=int(order.ends.size), notes=notes)
    return RunningSequentialResult(
        **base,
        look_every=order.look_every,
        looks_tested=monitor.looks,
        last_look=last,
        history=thin(history, MAX_HISTORY),
    )


def thin(points: Sequence[_T], limit: int) -> tuple[_T, ...]:
    """At most ``limit`` (>= 2) of ``points``, evenly spaced, the first and last kept."""
    if len(points) <= limit:
        return tuple(points)
    keep = np.unique(np.round(np.linspace(0, len(points) - 1, limit)).astype(np.int64))
    return tuple(points[int(i)] for i in keep)


def sequential_ctr(
    order: EntryOrder, control: str, treatment: str, *, alpha: float, target_n: int
) -> RunningSequentialResult:
    """Always-valid CTR test run over the scheduled looks: running-min p, intersected CI.

    Looks where the test is undefined (fewer than 2 units in an arm, no variance yet)
    are skipped; they carry no evidence and skipping looks keeps the guarantee.

    Raises:
        NotTestableError: when the last look (all units) cannot be tested.
    """
    if order.n_units == 0:
        raise NotTestableError("no exposed units yet")
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
        NotTestableError: when the last look (all units) cannot be tested.
        ExperimentError: when ``metric`` is not one of :data:`METRIC_SPECS`.
    """
    if metric == "ctr":
        return sequential_ctr(order, control, treatment, alpha=alpha, target_n=target_n)
    if order.n_units == 0:
        raise NotTestableError("no exposed units yet")
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


def _variant_stats(
    store: EventStore, spec: ExperimentSpec
) -> tuple[dict[str, dict[str, Stats]], dict[str, Stats], list[str]]:
    """Sufficient statistics per metric and variant (SQL sums), CUPED's, and notes.

    Variants of the spec without events get empty statistics; events of variants the spec
    does not name are ignored with a note.
    """
    source = store.source(spec.id)
    raw = metric_stats(source, list(METRIC_SPECS.values()))
    raw_cuped = metric_stats(source, [CUPED_SPEC])[CUPED_SPEC.name]
    names = spec.variant_names
    stats = {m: {v: raw[m].get(v) or ms.stats({}) for v in names} for m, ms in METRIC_SPECS.items()}
    cuped_stats = {v: raw_cuped.get(v) or CUPED_SPEC.stats({}) for v in names}
    notes: list[str] = []
    unknown = sorted(set(raw["ctr"]) - set(names))
    if unknown:
        notes.append(f"events for variants not in the spec were ignored: {unknown}")
    return stats, cuped_stats, notes


def _guardrails(
    order: EntryOrder,
    control: str,
    treatment: str,
    metrics: Sequence[str],
    seq_ctr: RunningSequentialResult | None,
    tests: Sequence[Comparison],
    *,
    alpha: float,
    target_n: int,
    notes: list[str],
) -> tuple[GuardrailResult, ...]:
    """Each guardrail judged on its always-valid CI over the looks (untestable ones noted)."""
    out = []
    for g in metrics:
        try:
            g_seq = seq_ctr if g == "ctr" and seq_ctr is not None else None
            if g_seq is None:
                g_seq = sequential_metric(
                    order, control, treatment, g, alpha=alpha, target_n=target_n
                )
        except NotTestableError as exc:
            notes.append(f"guardrail {g}: not judged ({exc})")
            continue
        fixed = next((c.result for c in tests if c.metric == g), None)
        assert fixed is None or isinstance(fixed, EffectResult)
        out.append(_guardrail(g, g_seq, fixed))
    return tuple(out)


def analyze(
    store: EventStore,
    spec: ExperimentSpec,
    *,
    alpha: float | None = None,
    look_every: int | None = None,
) -> ExperimentResults:
    """Analyse an experiment from the events in ``store``; sparse data become notes.

    Per treatment vs control: CTR (ratio of sums, delta method), clicks/conversions/
    exposures per unit (Welch), with Holm- (decides ``significant``) and BH-adjusted
    p-values across those tests and all treatments (the engine :func:`abrec.stats.compare`
    on sums aggregated in SQL), an always-valid sequential test of CTR over looks at every
    ``look_every`` units in entry order (default: the spec's ``sequential_look_every``, else
    100), CUPED on clicks per unit over the units with a covariate event, and guardrails
    judged on the same looks with always-valid CIs (a significant drop fails, even at a
    data-dependent stopping time). Only :class:`abrec.stats.NotTestableError` becomes a
    "not tested" note; any other error propagates.

    Raises:
        ExperimentError: when ``look_every`` is not a positive integer.
    """
    a = spec.alpha if alpha is None else float(alpha)
    every = _look_every(spec, look_every)
    if spec.type == "interleaving":
        inter, notes_i = interleaving_analysis(store, spec, a)
        return ExperimentResults(
            experiment=spec.id, status=spec.status, control=spec.control or spec.variant_names[0],
            alpha=a, primary_metric="interleaving preference", variants=(), srm=None,
            comparisons=(), notes=tuple(notes_i), type=spec.type, interleaving=inter,
        )  # fmt: skip
    names = spec.variant_names
    stats, cuped_stats, notes = _variant_stats(store, spec)
    variants = tuple(
        _variant_summary(spec, n, {m: stats[m][n] for m in METRIC_SPECS}, cuped_stats[n])
        for n in names
    )
    srm, srm_notes = _srm(spec, {v.variant: v.n for v in variants})
    notes.extend(srm_notes)

    control = spec.control or names[0]
    treatments = [n for n in names if n != control]
    guardrail_names = tuple(spec.guardrails) or DEFAULT_GUARDRAILS
    order = entry_order(store, spec, every)
    target_n = spec.planned_units or 10_000

    # Fixed-horizon tests for every (treatment, metric): Holm and BH over the whole family.
    untested: list[Untested] = []
    tests, _ = compare(
        stats, list(METRIC_SPECS.values()), control, treatments, alpha=a, untested=untested
    )
    comparisons = []
    for t in treatments:
        cmp_notes = [u.note for u in untested if u.variant == t]
        t_tests = tuple(sorted(
            (c for c in tests if c.variant == t), key=lambda c: METRICS.index(c.metric)
        ))  # fmt: skip
        primary = next((c for c in t_tests if c.metric == spec.primary_metric), None)
        seq: RunningSequentialResult | None = None
        try:
            seq = sequential_ctr(order, control, t, alpha=a, target_n=target_n)
        except NotTestableError as exc:
            cmp_notes.append(f"sequential ctr: not tested ({exc})")
        cuped, cuped_note = _cuped(
            cuped_stats[control], cuped_stats[t], stats["ctr"], control, t, a
        )
        if cuped_note:
            cmp_notes.append(cuped_note)
        guards = _guardrails(
            order, control, t, guardrail_names, seq, t_tests,
            alpha=a, target_n=target_n, notes=cmp_notes,
        )  # fmt: skip
        comparisons.append(
            TreatmentResult(
                treatment=t,
                control=control,
                primary=primary,
                tests=t_tests,
                sequential_ctr=seq,
                cuped_clicks_per_unit=cuped,
                guardrails=guards,
                notes=tuple(cmp_notes),
            )
        )
    bandit = None
    if spec.type == "bandit":
        bandit, bandit_notes = bandit_analysis(store, spec, 1.0 - a)
        notes.extend(bandit_notes)
    return ExperimentResults(
        experiment=spec.id,
        status=spec.status,
        control=control,
        alpha=a,
        primary_metric=spec.primary_metric,
        variants=variants,
        srm=srm,
        comparisons=tuple(comparisons),
        notes=tuple(notes),
        type=spec.type,
        bandit=bandit,
    )


def _cuped(
    c: Stats,
    t: Stats,
    ctr: Mapping[str, Stats],
    control: str,
    treatment: str,
    alpha: float,
) -> tuple[EffectResult | None, str | None]:
    """CUPED on clicks per unit over units with a covariate (None when nobody has one)."""
    assert isinstance(c, CupedStats) and isinstance(t, CupedStats)
    if not (c.n and t.n):
        return None, None
    try:
        res = cuped_test(c, t, alpha=alpha, metric="clicks_per_unit")
    except NotTestableError as exc:
        return None, f"CUPED: not tested ({exc})"
    covered = (c.n + t.n) / max(ctr[control].n + ctr[treatment].n, 1)
    if covered < 1:
        return res, f"CUPED uses the {covered:.0%} of units that have a covariate event"
    return res, None


#: Parses and dumps :class:`ExperimentResults` (the results endpoint's JSON).
RESULTS_ADAPTER: TypeAdapter[ExperimentResults] = TypeAdapter(ExperimentResults)
