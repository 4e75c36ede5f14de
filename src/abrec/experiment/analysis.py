"""Analysis of a stored experiment: per-variant metrics, SRM, effects with CIs, CUPED, guardrails.

Everything is computed from per-variant sufficient statistics aggregated in SQL
(:meth:`abrec.store.EventStore.variant_summary`); the statistics come from
:mod:`abrec.stats`. Units are the experiment's ``unit_id`` values with at least one
exposure; all metrics are "higher is better".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abrec.experiment.spec import ExperimentSpec
from abrec.stats import (
    CupedStats,
    EffectResult,
    MeanStats,
    RatioStats,
    SequentialResult,
    SRMResult,
    StatsError,
    cuped_test,
    holm,
    ratio_test,
    sequential_ratio_test,
    srm_test,
    welch_ttest,
)
from abrec.stats.results import ToDictMixin
from abrec.store.events import VariantSummary
from abrec.store.sql import EventStore

SRM_THRESHOLD = 0.001
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
class GuardrailResult(ToDictMixin):
    """A guardrail fails when its CI shows a significant drop (upper bound below 0)."""

    metric: str
    estimate: float
    low: float
    high: float
    relative: float
    p_value: float
    passed: bool


@dataclass(frozen=True)
class Comparison(ToDictMixin):
    """One treatment against the control."""

    treatment: str
    control: str
    primary: MetricTest | None
    tests: tuple[MetricTest, ...]
    sequential_ctr: SequentialResult | None
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


def analyze(
    store: EventStore, spec: ExperimentSpec, *, alpha: float | None = None
) -> ExperimentResults:
    """Analyse an experiment from the events in ``store``; never raises for sparse data.

    Per treatment vs control: CTR (ratio of sums, delta method), clicks/conversions/
    exposures per unit (Welch), Holm-adjusted p-values across those tests and all
    treatments, an always-valid sequential CI for CTR, CUPED on clicks per unit when
    covariate events exist, and guardrails (a significant drop fails).
    """
    a = spec.alpha if alpha is None else float(alpha)
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
        seq: SequentialResult | None = None
        try:
            seq = sequential_ratio_test(
                _ratio_stats(control),
                _ratio_stats(ts),
                alpha=a,
                metric="ctr",
                target_n=spec.planned_units or 10_000,
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
            res = fixed.get((t, g))
            if res is None:
                continue
            guards.append(
                GuardrailResult(
                    metric=g,
                    estimate=res.absolute.estimate,
                    low=res.absolute.low,
                    high=res.absolute.high,
                    relative=res.relative.estimate,
                    p_value=res.p_value,
                    passed=not res.absolute.high < 0,
                )
            )
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
