"""The one experiment-analysis engine: metrics declare their aggregates, any source sums them.

A metric (:class:`MetricSpec`) declares the per-variant sums it needs (:attr:`MetricSpec.
aggregates`: products of per-unit columns, like tea-tasting's ``aggr_cols``). A *source*
computes those sums per variant: :func:`column_source` in numpy from per-unit columns (a CSV,
a DataFrame) and :meth:`abrec.store.EventStore.aggregate` in SQL. :func:`analyze` then runs
the same tests, SRM check and Holm/Benjamini-Hochberg corrections on either.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, cast

import numpy as np
import numpy.typing as npt
from pydantic import Discriminator, Tag

from abrec.stats.bayesian import bayes_means, bayes_proportions, bayes_ratio
from abrec.stats.errors import NotTestableError, StatsInputError
from abrec.stats.frequentist import cuped_test, ratio_test, welch_ttest, ztest_proportions
from abrec.stats.multiple import benjamini_hochberg, holm
from abrec.stats.results import (
    SRM_THRESHOLD,
    BayesResult,
    EffectResult,
    Num,
    OptNum,
    SequentialResult,
    SRMResult,
    ToDictMixin,
)
from abrec.stats.sequential import sequential_ratio_test, sequential_test
from abrec.stats.srm import srm_test
from abrec.stats.sufficient import CupedStats, MeanStats, RatioStats

MetricKind = Literal["proportion", "mean", "ratio"]
Method = Literal["frequentist", "bayesian", "sequential"]
_KINDS = ("proportion", "mean", "ratio")
_METHODS = ("frequentist", "bayesian", "sequential")

#: A product of per-unit columns whose sum per variant is wanted; ``()`` counts the units.
Term = tuple[str, ...]
#: Per variant, the sum of each requested term.
VariantSums = dict[str, dict[Term, float]]
#: Sufficient statistics of one metric in one variant.
Stats = MeanStats | RatioStats | CupedStats
#: Sums ``terms`` per variant over the units whose ``require`` column is present (all if None).
Source = Callable[[Sequence[Term], "str | None"], VariantSums]


@dataclass(frozen=True)
class Aggregates:
    """The sums a metric needs: ``terms`` over the units that have a value in ``require``."""

    terms: tuple[Term, ...]
    require: str | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One metric: a per-unit column (or numerator/denominator), its kind and a covariate.

    With a covariate, the frequentist test is CUPED over the units that have a covariate value.
    """

    name: str
    kind: MetricKind
    column: str
    denominator: str | None = None
    covariate: str | None = None

    @classmethod
    def parse(cls, text: str, covariate: str | None = None) -> MetricSpec:
        """Parse `column:kind` or `numerator/denominator:ratio`."""
        col, sep, kind = text.rpartition(":")
        if not sep or not col or kind not in _KINDS:
            raise StatsInputError(
                f"metric {text!r} must look like COLUMN:KIND with KIND one of "
                f"{', '.join(_KINDS)} (e.g. converted:proportion, clicks/exposures:ratio)."
            )
        if kind == "ratio":
            num, slash, den = col.partition("/")
            if not slash or not num or not den:
                raise StatsInputError(
                    f"ratio metric {text!r} must look like NUMERATOR/DENOMINATOR:ratio."
                )
            return cls(col, "ratio", num, den, None)
        return cls(col, cast(MetricKind, kind), col, None, covariate)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every input column the metric reads."""
        return tuple(c for c in (self.column, self.denominator, self.covariate) if c)

    @property
    def aggregates(self) -> Aggregates:
        """The per-variant sums this metric's tests need (the count first)."""
        y = self.column
        if self.kind == "ratio":
            assert self.denominator is not None
            d = self.denominator
            return Aggregates(((), (y,), (y, y), (d,), (d, d), (y, d)))
        if self.covariate:
            x = self.covariate
            return Aggregates(((), (y,), (y, y), (x,), (x, x), (x, y)), require=x)
        return Aggregates(((), (y,), (y, y)))

    def stats(self, sums: Mapping[Term, float]) -> Stats:
        """The sufficient statistics of one variant from the sums of :attr:`aggregates`."""
        terms = self.aggregates.terms
        n, *rest = (sums.get(t, 0.0) for t in terms)
        if self.kind == "ratio":
            return RatioStats(int(n), *rest)
        if self.covariate:
            return CupedStats(int(n), *rest)
        return MeanStats(int(n), *rest)


def _result_kind(v: Any) -> str:
    def has(key: str) -> bool:
        return (key in v) if isinstance(v, Mapping) else hasattr(v, key)

    if has("prob_beat_control"):
        return "bayes"
    return "effect" if has("absolute") else "sequential"


#: The result of one comparison; parsed from JSON by its fields (no shared tag field).
AnyResult = Annotated[
    Annotated[EffectResult, Tag("effect")]
    | Annotated[BayesResult, Tag("bayes")]
    | Annotated[SequentialResult, Tag("sequential")],
    Discriminator(_result_kind),
]


@dataclass(frozen=True)
class VariantSummary(ToDictMixin):
    """Units and per-metric means (raw, unadjusted) of one variant.

    ``totals`` holds raw counts where the source has them (the store: exposures, clicks...);
    ``model`` and ``weight`` come from an experiment spec when there is one.
    """

    variant: str
    n: int
    means: dict[str, Num] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    model: str | None = None
    weight: OptNum = None


@dataclass(frozen=True)
class Comparison(ToDictMixin):
    """One treatment variant against control on one metric, with Holm and BH p-values.

    ``significant`` follows the Holm-adjusted p-value (< alpha); it is False without one.
    """

    metric: str
    variant: str
    kind: str
    result: AnyResult
    p_value: OptNum
    p_value_holm: OptNum = None
    p_value_bh: OptNum = None
    significant: bool = False


@dataclass(frozen=True)
class Untested:
    """A comparison the data could not support yet (a :class:`NotTestableError`)."""

    metric: str
    variant: str
    reason: str

    @property
    def note(self) -> str:
        """The human-readable note."""
        return f"{self.metric}: not tested ({self.reason})"


@dataclass(frozen=True)
class ExperimentAnalysis(ToDictMixin):
    """Every comparison of an experiment, the SRM check and multiplicity-corrected p-values."""

    control: str
    method: str
    alpha: Num
    variants: tuple[VariantSummary, ...]
    comparisons: tuple[Comparison, ...]
    srm: SRMResult
    notes: tuple[str, ...] = ()


def _codes(variants: npt.ArrayLike) -> tuple[list[str], npt.NDArray[np.integer[Any]]]:
    v = np.asarray(variants)
    if v.ndim != 1 or v.size == 0:
        raise StatsInputError("the variant column must be a non-empty 1-d array.")
    if v.dtype.kind in "iu" and v.min() >= 0 and v.max() < 1_000_000:
        present = np.flatnonzero(np.bincount(v))
        if present.size == int(v.max()) + 1:  # labels are already 0..k-1
            return [str(x) for x in present], v
        lookup = np.full(int(v.max()) + 1, -1, dtype=np.intp)
        lookup[present] = np.arange(present.size)
        return [str(x) for x in present], lookup[v]
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        raise StatsInputError("the variant column has missing values; drop those units.")
    if v.dtype.kind == "O" and any(x is None for x in v):
        raise StatsInputError("the variant column has missing values; drop those units.")
    labels, codes = np.unique(v.astype(str), return_inverse=True)
    return [str(x) for x in labels], codes.astype(np.intp)


def _column(
    columns: Mapping[str, npt.ArrayLike], name: str, *, allow_nan: bool = False
) -> npt.NDArray[np.float64]:
    if name not in columns:
        raise StatsInputError(f"column {name!r} not found; available: {sorted(columns)}.")
    try:
        arr = np.asarray(columns[name], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"column {name!r} must be numeric.") from exc
    if not allow_nan and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise StatsInputError(
            f"column {name!r} has {bad} missing or infinite value(s); fill or drop them first."
        )
    return arr


_CHUNK = 1 << 18


def _group_sums(
    codes: npt.NDArray[np.integer[Any]], k: int, features: list[tuple[Any, ...]]
) -> npt.NDArray[np.float64]:
    """Per-group sums of products of columns: one (k x m) matrix, computed in row chunks.

    Each feature is a tuple of 1-d arrays whose elementwise product is summed per group.
    """
    n = codes.shape[0]
    out = np.zeros((k, len(features)))
    groups = np.arange(k, dtype=codes.dtype)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        block = np.empty((stop - start, len(features)), order="F")
        for j, cols in enumerate(features):
            if len(cols) == 1:
                block[:, j] = cols[0][start:stop]
            else:
                np.multiply(cols[0][start:stop], cols[1][start:stop], out=block[:, j])
        onehot = (codes[start:stop, None] == groups[None, :]).astype(np.float64)
        out += onehot.T @ block
    return out


def column_source(columns: Mapping[str, npt.ArrayLike], variants: npt.ArrayLike) -> Source:
    """A :data:`Source` over per-unit columns: sums per variant in chunked numpy passes.

    NaN is allowed only in a ``require`` column (the unit then lacks that value and is left
    out of those sums); any other column must be finite.
    """
    labels, codes = _codes(variants)

    def source(terms: Sequence[Term], require: str | None = None) -> VariantSums:
        keep = None
        if require is not None:
            req = _column(columns, require, allow_nan=True)
            if req.shape[0] != codes.shape[0]:
                raise StatsInputError(
                    f"column {require!r} and the variant column differ in length."
                )
            keep = np.isfinite(req)
        cols: dict[str, npt.NDArray[np.float64]] = {}
        for name in {c for t in terms for c in t}:
            arr = _column(columns, name, allow_nan=name == require)
            if arr.shape[0] != codes.shape[0]:
                raise StatsInputError(f"column {name!r} and the variant column differ in length.")
            cols[name] = arr if keep is None else np.where(keep, arr, 0.0)
        ones = np.ones(codes.shape[0]) if keep is None else keep.astype(np.float64)
        features = [tuple(cols[c] for c in t) if t else (ones,) for t in terms]
        sums = _group_sums(codes, len(labels), features)
        return {
            v: {t: float(sums[i, j]) for j, t in enumerate(terms)} for i, v in enumerate(labels)
        }

    return source


def metric_stats(source: Source, metrics: Sequence[MetricSpec]) -> dict[str, dict[str, Stats]]:
    """Sufficient statistics per metric and variant: one source call per ``require`` group."""
    groups: dict[str | None, list[Term]] = {}
    for m in metrics:
        agg = m.aggregates
        terms = groups.setdefault(agg.require, [])
        terms.extend(t for t in agg.terms if t not in terms)
    sums = {req: source(terms, req) for req, terms in groups.items()}
    out: dict[str, dict[str, Stats]] = {}
    for m in metrics:
        by_variant = sums[m.aggregates.require]
        out[m.name] = {v: m.stats(s) for v, s in by_variant.items()}
    return out


def aggregate(
    columns: Mapping[str, npt.ArrayLike],
    variants: npt.ArrayLike,
    metrics: Sequence[MetricSpec],
) -> tuple[list[str], list[int], dict[str, list[Stats]]]:
    """Per-variant sufficient statistics of every metric from per-unit columns (no NaN)."""
    _validate(columns, variants, metrics)
    labels = _codes(variants)[0]
    source = column_source(columns, variants)
    counts_by = source([()], None)
    stats = metric_stats(source, metrics)
    counts = [int(counts_by[v][()]) for v in labels]
    return labels, counts, {name: [s[v] for v in labels] for name, s in stats.items()}


def _validate(
    columns: Mapping[str, npt.ArrayLike], variants: npt.ArrayLike, metrics: Sequence[MetricSpec]
) -> None:
    """Every metric column exists, is finite and as long as the variants; proportions are 0/1."""
    codes = _codes(variants)[1]
    for m in metrics:
        y = _column(columns, m.column)
        if y.shape[0] != codes.shape[0]:
            raise StatsInputError(f"column {m.column!r} and the variant column differ in length.")
        if m.kind == "proportion" and not ((y == 0.0) | (y == 1.0)).all():
            raise StatsInputError(
                f"proportion metric {m.name!r} must hold only 0 and 1; use :mean for other values."
            )
        for c in m.columns[1:]:
            if _column(columns, c).shape[0] != codes.shape[0]:
                raise StatsInputError(f"column {c!r} and the variant column differ in length.")


def _mean_of(s: Stats) -> float:
    if s.n == 0:
        return math.nan
    if isinstance(s, RatioStats):
        return s.ratio if s.sum_den else math.nan
    if isinstance(s, CupedStats):
        return s.sum_y / s.n
    return s.mean


def _compare(
    m: MetricSpec,
    c: Any,
    t: Any,
    method: Method,
    alpha: float,
    seed: int,
    target_n: int,
) -> tuple[EffectResult | BayesResult | SequentialResult, str | None]:
    note = None
    if method == "frequentist":
        if isinstance(c, RatioStats):
            return ratio_test(c, t, alpha=alpha, metric=m.name), None
        if isinstance(c, CupedStats):
            return cuped_test(c, t, alpha=alpha, metric=m.name), None
        if m.kind == "proportion":
            return ztest_proportions(c, t, alpha=alpha, metric=m.name), None
        return welch_ttest(c, t, alpha=alpha, metric=m.name), None
    if isinstance(c, CupedStats):
        note = f"{m.name}: the covariate is used only by the frequentist method (CUPED)"
        c, t = c.y, t.y
    if method == "bayesian":
        cred = 1.0 - alpha
        if isinstance(c, RatioStats):
            return bayes_ratio(c, t, credibility=cred, seed=seed, metric=m.name), note
        if m.kind == "proportion":
            return bayes_proportions(c, t, credibility=cred, seed=seed, metric=m.name), note
        return bayes_means(c, t, credibility=cred, seed=seed, metric=m.name), note
    if isinstance(c, RatioStats):
        return sequential_ratio_test(c, t, alpha=alpha, target_n=target_n, metric=m.name), note
    return sequential_test(c, t, alpha=alpha, target_n=target_n, metric=m.name), note


def compare(
    stats: Mapping[str, Mapping[str, Stats]],
    metrics: Sequence[MetricSpec],
    control: str,
    treatments: Sequence[str],
    *,
    method: str = "frequentist",
    alpha: float = 0.05,
    seed: int = 0,
    target_n: int = 10_000,
    untested: list[Untested] | None = None,
) -> tuple[list[Comparison], list[str]]:
    """Every treatment against ``control`` on every metric; Holm and BH over the whole family.

    With ``untested`` given, a :class:`NotTestableError` of one comparison is recorded there
    and the comparison left out; without it, it propagates. Any other error propagates.

    Returns:
        The comparisons (metric-major order) and notes on how the data were used.
    """
    if method not in _METHODS:
        raise StatsInputError(f"method must be one of {', '.join(_METHODS)}, got {method!r}.")
    comps: list[Comparison] = []
    notes: list[str] = []
    for m in metrics:
        for v in treatments:
            try:
                res, note = _compare(
                    m, stats[m.name][control], stats[m.name][v], cast(Method, method), alpha,
                    seed, target_n,
                )  # fmt: skip
            except NotTestableError as exc:
                if untested is None:
                    raise
                untested.append(Untested(m.name, v, str(exc)))
                continue
            if note and note not in notes:
                notes.append(note)
            p = None if isinstance(res, BayesResult) else res.p_value
            comps.append(Comparison(m.name, v, m.kind, res, p))
    ps = [c.p_value for c in comps if c.p_value is not None]
    if ps:
        h, bh = iter(holm(ps)), iter(benjamini_hochberg(ps))
        adjusted = []
        for c in comps:
            if c.p_value is None:
                adjusted.append(c)
                continue
            ph = float(next(h))
            adjusted.append(
                Comparison(c.metric, c.variant, c.kind, c.result, c.p_value, ph,
                           float(next(bh)), ph < alpha)
            )  # fmt: skip
        comps = adjusted
    return comps, notes


def srm_note(srm: SRMResult) -> str | None:
    """The warning to show when the split does not match the weights, else None."""
    if not srm.mismatch:
        return None
    return (
        f"sample-ratio mismatch (p={srm.p_value:.2g} < {srm.threshold:g}): the observed split "
        "does not match the weights; investigate assignment/logging before trusting effects"
    )


def analyze(
    source: Source,
    *,
    control: str,
    metrics: Sequence[MetricSpec],
    method: str = "frequentist",
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    srm_threshold: float = SRM_THRESHOLD,
    seed: int = 0,
    target_n: int = 10_000,
) -> ExperimentAnalysis:
    """Analyse every treatment variant against ``control`` on every metric, from any source.

    Args:
        source: :func:`column_source` (numpy) or a store's aggregate (SQL).
        weights: intended allocation per variant (any scale); equal when None.
        target_n: total units at which the sequential method's confidence sequence is tightest.
    """
    if method not in _METHODS:
        raise StatsInputError(f"method must be one of {', '.join(_METHODS)}, got {method!r}.")
    if not metrics:
        raise StatsInputError("give at least one metric.")
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise StatsInputError(f"metric names must be unique, got {names}.")
    counts_by = source([()], None)
    labels = list(counts_by)
    counts = [int(counts_by[v][()]) for v in labels]
    control = str(control)
    if control not in labels:
        raise StatsInputError(f"control variant {control!r} not found; variants are {labels}.")
    if len(labels) < 2:
        raise StatsInputError(f"only one variant ({labels[0]!r}) in the data; nothing to compare.")
    if weights is None:
        w = [1.0] * len(labels)
    else:
        missing = [v for v in labels if v not in weights]
        if missing:
            raise StatsInputError(
                f"weights are missing variant(s) {missing}; give one per variant."
            )
        w = [float(weights[v]) for v in labels]
    srm = srm_test(counts, w, threshold=srm_threshold)
    stats = metric_stats(source, metrics)
    summaries = tuple(
        VariantSummary(v, counts[i], {m.name: _mean_of(stats[m.name][v]) for m in metrics})
        for i, v in enumerate(labels)
    )
    treatments = [v for v in labels if v != control]
    comps, notes = compare(
        stats, metrics, control, treatments, method=method, alpha=alpha, seed=seed,
        target_n=target_n,
    )  # fmt: skip
    note = srm_note(srm)
    if note:
        notes.append(note)
    return ExperimentAnalysis(
        control=control,
        method=method,
        alpha=alpha,
        variants=summaries,
        comparisons=tuple(comps),
        srm=srm,
        notes=tuple(notes),
    )


def analyze_experiment(
    columns: Mapping[str, npt.ArrayLike],
    variants: npt.ArrayLike,
    *,
    control: str,
    metrics: Sequence[MetricSpec],
    method: str = "frequentist",
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    srm_threshold: float = SRM_THRESHOLD,
    seed: int = 0,
    target_n: int = 10_000,
) -> ExperimentAnalysis:
    """:func:`analyze` on per-unit columns (every column finite; proportions 0/1).

    Args:
        columns: per-unit numeric columns by name; variants: the variant label of each unit.
    """
    _validate(columns, variants, metrics)
    return analyze(
        column_source(columns, variants),
        control=control,
        metrics=metrics,
        method=method,
        weights=weights,
        alpha=alpha,
        srm_threshold=srm_threshold,
        seed=seed,
        target_n=target_n,
    )
