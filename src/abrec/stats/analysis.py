"""Whole-experiment analysis from per-unit columns: aggregation, tests, SRM, Holm/BH."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from abrec.stats.bayesian import bayes_means, bayes_proportions, bayes_ratio
from abrec.stats.errors import StatsInputError
from abrec.stats.frequentist import cuped_test, ratio_test, welch_ttest, ztest_proportions
from abrec.stats.multiple import benjamini_hochberg, holm
from abrec.stats.results import BayesResult, EffectResult, SequentialResult, SRMResult, ToDictMixin
from abrec.stats.sequential import sequential_ratio_test, sequential_test
from abrec.stats.srm import srm_test
from abrec.stats.sufficient import CupedStats, MeanStats, RatioStats

MetricKind = Literal["proportion", "mean", "ratio"]
Method = Literal["frequentist", "bayesian", "sequential"]
_KINDS = ("proportion", "mean", "ratio")
_METHODS = ("frequentist", "bayesian", "sequential")


@dataclass(frozen=True)
class MetricSpec:
    """One metric: a per-unit column (or numerator/denominator) and its kind."""

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


@dataclass(frozen=True)
class VariantSummary(ToDictMixin):
    """Units and per-metric means (raw, unadjusted) of one variant."""

    variant: str
    n: int
    means: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison(ToDictMixin):
    """One treatment variant against control on one metric."""

    metric: str
    variant: str
    kind: str
    result: EffectResult | BayesResult | SequentialResult
    p_value: float | None
    p_value_holm: float | None = None
    p_value_bh: float | None = None


@dataclass(frozen=True)
class ExperimentAnalysis(ToDictMixin):
    """Every comparison of an experiment, the SRM check and multiplicity-corrected p-values."""

    control: str
    method: str
    alpha: float
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


def _column(columns: Mapping[str, npt.ArrayLike], name: str) -> npt.NDArray[np.float64]:
    if name not in columns:
        raise StatsInputError(f"column {name!r} not found; available: {sorted(columns)}.")
    try:
        arr = np.asarray(columns[name], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsInputError(f"column {name!r} must be numeric.") from exc
    if not np.isfinite(arr).all():
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


def aggregate(
    columns: Mapping[str, npt.ArrayLike],
    variants: npt.ArrayLike,
    metrics: Sequence[MetricSpec],
) -> tuple[list[str], list[int], dict[str, list[MeanStats | RatioStats | CupedStats]]]:
    """Per-variant sufficient statistics of every metric in one chunked pass over the rows."""
    labels, codes = _codes(variants)
    k = len(labels)
    counts = [int(c) for c in np.bincount(codes, minlength=k)]
    features: list[tuple[Any, ...]] = []
    slots: dict[str, tuple[str, list[int]]] = {}
    for m in metrics:
        y = _column(columns, m.column)
        if y.shape[0] != codes.shape[0]:
            raise StatsInputError(f"column {m.column!r} and the variant column differ in length.")
        if m.kind == "proportion" and not ((y == 0.0) | (y == 1.0)).all():
            raise StatsInputError(
                f"proportion metric {m.name!r} must hold only 0 and 1; use :mean for other values."
            )
        first = len(features)
        if m.kind == "ratio":
            assert m.denominator is not None
            d = _column(columns, m.denominator)
            features += [(y,), (y, y), (d,), (d, d), (y, d)]
            kind = "ratio"
        elif m.covariate:
            x = _column(columns, m.covariate)
            features += [(y,), (y, y), (x,), (x, x), (x, y)]
            kind = "cuped"
        else:
            features += [(y,), (y, y)]
            kind = "mean"
        slots[m.name] = (kind, list(range(first, len(features))))
    sums = _group_sums(codes, k, features)
    out: dict[str, list[MeanStats | RatioStats | CupedStats]] = {}
    for name, (kind, idx) in slots.items():
        rows = [[float(v) for v in sums[i, idx]] for i in range(k)]
        if kind == "ratio":
            out[name] = [RatioStats(counts[i], *rows[i]) for i in range(k)]
        elif kind == "cuped":
            out[name] = [CupedStats(counts[i], *rows[i]) for i in range(k)]
        else:
            out[name] = [MeanStats(counts[i], *rows[i]) for i in range(k)]
    return labels, counts, out


def _mean_of(s: MeanStats | RatioStats | CupedStats) -> float:
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


def analyze_experiment(
    columns: Mapping[str, npt.ArrayLike],
    variants: npt.ArrayLike,
    *,
    control: str,
    metrics: Sequence[MetricSpec],
    method: str = "frequentist",
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    srm_threshold: float = 0.001,
    seed: int = 0,
    target_n: int = 10_000,
) -> ExperimentAnalysis:
    """Analyse every treatment variant against `control` on every metric.

    Args:
        columns: per-unit numeric columns by name; variants: the variant label of each unit.
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
    labels, counts, stats = aggregate(columns, variants, metrics)
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
    ci = labels.index(control)
    summaries = tuple(
        VariantSummary(v, counts[i], {m.name: _mean_of(stats[m.name][i]) for m in metrics})
        for i, v in enumerate(labels)
    )
    comps: list[Comparison] = []
    notes: list[str] = []
    for m in metrics:
        for i, v in enumerate(labels):
            if i == ci:
                continue
            res, note = _compare(
                m, stats[m.name][ci], stats[m.name][i], cast(Method, method), alpha, seed, target_n
            )
            if note and note not in notes:
                notes.append(note)
            p = None if isinstance(res, BayesResult) else res.p_value
            comps.append(Comparison(m.name, v, m.kind, res, p))
    if srm.mismatch:
        notes.append(
            f"sample ratio mismatch (p={srm.p_value:.2g}): assignment or logging is broken; "
            "do not trust these effects until it is explained"
        )
    ps = [c.p_value for c in comps if c.p_value is not None]
    if ps:
        h, bh = iter(holm(ps)), iter(benjamini_hochberg(ps))
        comps = [
            Comparison(
                c.metric, c.variant, c.kind, c.result, c.p_value, float(next(h)), float(next(bh))
            )
            if c.p_value is not None
            else c
            for c in comps
        ]
    return ExperimentAnalysis(
        control=control,
        method=method,
        alpha=alpha,
        variants=summaries,
        comparisons=tuple(comps),
        srm=srm,
        notes=tuple(notes),
    )
