"""Vectorised, seeded bootstrap confidence intervals (percentile and BCa) for any statistic.

A sample is a 1-d array, resampled by rows, or a `Paired` group of aligned arrays resampled
with one index per resample (all arrays move together), optionally by whole clusters: the
arrays are then summed within each cluster and the statistic sees the cluster totals, which
is exact for statistics of sums such as a ratio of sums (the cluster bootstrap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from abrec.stats._checks import as_1d, check_alpha
from abrec.stats.errors import StatsInputError
from abrec.stats.results import BootstrapResult, Interval

Statistic = Callable[..., Any]
FloatArray = npt.NDArray[np.float64]
_CHUNK_ELEMENTS = 4_000_000


class Paired:
    """Aligned arrays that a bootstrap resamples together (same rows, or same clusters).

    ``Paired(num, den)`` resamples rows of both arrays with one index per resample, so
    ``statistic(num, den, axis)`` sees matching rows (a ratio of sums, a paired difference).
    With ``clusters`` (one id per row, any hashable dtype), each array is first summed within
    each cluster and whole clusters are resampled; the statistic then receives the cluster
    totals (in the order of ``numpy.unique(clusters)``), so it must be a function of sums,
    e.g. ``lambda num, den, axis: num.sum(axis) / den.sum(axis)``; for a mean pass the values
    and an array of ones.
    """

    __slots__ = ("arrays", "clusters")
    arrays: tuple[FloatArray, ...]
    clusters: npt.NDArray[np.intp] | None

    def __init__(self, *arrays: npt.ArrayLike, clusters: npt.ArrayLike | None = None) -> None:
        if not arrays:
            raise StatsInputError("Paired needs at least one array.")
        cols = [as_1d(a, f"paired array {i}", min_size=1) for i, a in enumerate(arrays)]
        sizes = {c.size for c in cols}
        if len(sizes) > 1:
            raise StatsInputError(
                f"Paired arrays must have the same length (aligned rows); got sizes "
                f"{[c.size for c in cols]}."
            )
        n = cols[0].size
        if clusters is None:
            if n < 2:
                raise StatsInputError("Paired arrays need at least 2 rows to resample.")
            self.arrays = tuple(cols)
            self.clusters = None
            return
        ids = np.asarray(clusters)
        if ids.ndim != 1 or ids.size != n:
            raise StatsInputError(
                f"clusters must be 1-d with one id per row ({n}); got shape {ids.shape}."
            )
        _, inverse = np.unique(ids, return_inverse=True)
        index = inverse.astype(np.intp).ravel()
        n_clusters = int(index.max()) + 1
        if n_clusters < 2:
            raise StatsInputError("clusters must name at least 2 distinct clusters to resample.")
        self.clusters = index
        self.arrays = tuple(
            np.bincount(index, weights=c, minlength=n_clusters).astype(np.float64) for c in cols
        )

    @property
    def n_units(self) -> int:
        """How many units (rows, or clusters) a resample draws."""
        return int(self.arrays[0].size)


def _groups(data: Any) -> list[tuple[FloatArray, ...]]:
    """Each independent sample as a tuple of aligned arrays (one array for a plain sample)."""
    if isinstance(data, Paired):
        return [data.arrays]
    if (
        isinstance(data, list | tuple)
        and data
        and (isinstance(data[0], Paired) or np.ndim(data[0]) >= 1)
    ):
        out: list[tuple[FloatArray, ...]] = []
        for i, d in enumerate(data):
            out.append(
                d.arrays if isinstance(d, Paired) else (as_1d(d, f"sample {i}", min_size=2),)
            )
        return out
    return [(as_1d(data, "data", min_size=2),)]


def _call(statistic: Statistic, arrays: Sequence[FloatArray]) -> Any:
    try:
        return np.asarray(statistic(*arrays, axis=-1), dtype=np.float64)
    except TypeError as exc:
        raise StatsInputError(
            "statistic must accept the sample(s) and an `axis` keyword and reduce along it, "
            "like numpy.mean; wrap scalar functions with numpy.apply_along_axis."
        ) from exc


def _flat(groups: Sequence[tuple[FloatArray, ...]]) -> list[FloatArray]:
    return [a for g in groups for a in g]


def _jackknife(statistic: Statistic, groups: list[tuple[FloatArray, ...]]) -> list[FloatArray]:
    """Leave-one-unit-out statistic values for each group (other groups held fixed)."""
    out = []
    for j, group in enumerate(groups):
        n = group[0].size
        base = np.arange(n - 1)
        chunk = max(1, _CHUNK_ELEMENTS // max(n - 1, 1))
        vals = []
        for start in range(0, n, chunk):
            drop = np.arange(start, min(n, start + chunk))
            idx = base[None, :] + (base[None, :] >= drop[:, None])
            rows = drop.size
            args = [
                tuple(x[idx] for x in g)
                if k == j
                else tuple(np.broadcast_to(x, (rows, x.size)) for x in g)
                for k, g in enumerate(groups)
            ]
            vals.append(np.atleast_1d(_call(statistic, _flat(args))))
        out.append(np.concatenate(vals))
    return out


def bootstrap(
    data: npt.ArrayLike | Paired | Sequence[npt.ArrayLike | Paired],
    statistic: Statistic,
    *,
    n_resamples: int = 9999,
    method: str = "percentile",
    confidence: float = 0.95,
    seed: int | None = 0,
    nonfinite: Literal["raise", "omit"] = "raise",
) -> BootstrapResult:
    """Bootstrap CI for `statistic(*arrays, axis=-1)`.

    Args:
        data: one 1-d array, a `Paired` group, or a list/tuple of independent samples (each
            resampled separately, e.g. `(control, treatment)` with `lambda c, t, axis: ...`);
            a `Paired` sample contributes all its arrays, in order, to the statistic's
            arguments and is resampled by whole rows or clusters.
        statistic: vectorised function reducing along `axis` (numpy.mean, numpy.median, ...).
        n_resamples: bootstrap resamples (>= 10; use thousands for a stable interval).
        method: "percentile" or "bca" (bias-corrected and accelerated, Efron 1987).
        seed: seed of the numpy Generator; resample b of sample s uses the same draws
            whatever the statistic, so estimators sharing a seed resample the same units.
        nonfinite: "raise" when a resample gives NaN/inf (the default), or "omit" to drop
            such resamples (e.g. a ratio whose resampled denominator is 0) before the
            quantiles; `std_error` is then over the finite resamples.
    """
    if method not in ("percentile", "bca"):
        raise StatsInputError(f"method must be 'percentile' or 'bca', got {method!r}.")
    if nonfinite not in ("raise", "omit"):
        raise StatsInputError(f"nonfinite must be 'raise' or 'omit', got {nonfinite!r}.")
    confidence = check_alpha(confidence, "confidence")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 10:
        raise StatsInputError(f"n_resamples must be an integer >= 10, got {n_resamples!r}.")
    groups = _groups(data)
    rng = np.random.default_rng(seed)
    theta_hat = float(_call(statistic, _flat(groups)))
    if not math.isfinite(theta_hat):
        raise StatsInputError("the statistic is not finite on the original data.")
    largest = max(g[0].size for g in groups)
    chunk = max(1, _CHUNK_ELEMENTS // largest)
    boots = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        resampled: list[FloatArray] = []
        for g in groups:
            idx = rng.integers(0, g[0].size, size=(b, g[0].size))
            resampled.extend(x[idx] for x in g)
        boots.append(np.atleast_1d(_call(statistic, resampled)))
    theta_b = np.concatenate(boots)
    finite = np.isfinite(theta_b)
    if not finite.all():
        if nonfinite == "raise":
            raise StatsInputError(
                "the statistic returned NaN or inf on some bootstrap resamples; pass "
                "nonfinite='omit' to drop them."
            )
        theta_b = theta_b[finite]
        if theta_b.size < 2:
            raise StatsInputError("fewer than 2 bootstrap resamples gave a finite statistic.")
    a = (1.0 - confidence) / 2.0
    lo_q, hi_q = a, 1.0 - a
    if method == "bca":
        pct = (np.sum(theta_b < theta_hat) + np.sum(theta_b <= theta_hat)) / (2.0 * theta_b.size)
        if pct <= 0.0 or pct >= 1.0:
            raise StatsInputError(
                "BCa is undefined: every bootstrap value lies on one side of the estimate; "
                "use method='percentile'."
            )
        z0 = float(special.ndtri(pct))
        nums, dens = 0.0, 0.0
        for th in _jackknife(statistic, groups):
            n = float(th.size)
            u = (n - 1.0) * (th.mean() - th)
            nums += float(np.sum(u**3)) / n**3
            dens += float(np.sum(u**2)) / n**2
        acc = nums / (6.0 * dens**1.5) if dens > 0 else 0.0
        za, z1a = float(special.ndtri(a)), float(special.ndtri(1.0 - a))
        lo_q = float(special.ndtr(z0 + (z0 + za) / (1.0 - acc * (z0 + za))))
        hi_q = float(special.ndtr(z0 + (z0 + z1a) / (1.0 - acc * (z0 + z1a))))
    low, high = np.quantile(theta_b, [lo_q, hi_q])
    return BootstrapResult(
        method=method,
        interval=Interval(theta_hat, float(low), float(high)),
        std_error=float(theta_b.std(ddof=1)),
        n_resamples=n_resamples,
        confidence=confidence,
    )
