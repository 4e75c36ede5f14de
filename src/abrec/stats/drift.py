"""Distribution drift between a reference (training) sample and a serving sample.

- :func:`psi`: population stability index over quantile bins of the reference.
- :func:`ks_test`: two-sample Kolmogorov-Smirnov test (:func:`scipy.stats.ks_2samp`).
- :func:`cosine_shift`: 1 - cosine between two centroids (embedding drift).
- :func:`drift_check`: the three together as one :class:`DriftCheck` with the alarm rule.

Thresholds (docs/operations.md, "Drift"): PSI < 0.1 is read as no significant change,
0.1-0.2 as a moderate one and > 0.2 as a significant shift (Siddiqi 2006, *Credit Risk
Scorecards*, ch. 8; Yurdakul 2018, "Statistical properties of the population stability
index"). The KS p-value alone flags practically irrelevant shifts at serving sample
sizes, and exposures are not independent (several per request, many per unit), so the KS
part of the alarm also needs a statistic (a gap between the two ECDFs) of at least
:data:`KS_MIN_STATISTIC`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from abrec.stats.errors import StatsInputError
from abrec.stats.results import Num, OptNum, ToDictMixin

#: PSI above this is the usual "significant shift" alarm.
PSI_ALARM = 0.2
#: PSI above this (and at most PSI_ALARM) is the usual "moderate shift" warning.
PSI_WARN = 0.1
#: KS p-value below which (together with KS_MIN_STATISTIC) the KS part of the alarm fires.
KS_ALPHA = 0.001
#: Smallest KS statistic (largest ECDF gap) that counts as a shift worth an alarm.
KS_MIN_STATISTIC = 0.1
#: Quantile bins of the reference used by PSI.
PSI_BINS = 10
#: Share that replaces an empty bin's share (in either sample) so the log stays finite.
PSI_EPSILON = 1e-4

FloatArray = npt.NDArray[np.float64]


def _sample(x: npt.ArrayLike, what: str) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise StatsInputError(f"the {what} sample is empty")
    if not np.isfinite(arr).all():
        raise StatsInputError(f"the {what} sample has non-finite values")
    return arr


def quantile_edges(reference: npt.ArrayLike, bins: int = PSI_BINS) -> FloatArray:
    """Inner bin edges: the reference's 1/bins, ..., (bins-1)/bins quantiles, deduplicated.

    Ties (e.g. a discrete popularity) merge bins, so fewer than ``bins`` bins may remain.
    """
    if bins < 2:
        raise StatsInputError(f"bins must be at least 2, got {bins}")
    ref = _sample(reference, "reference")
    return np.unique(np.quantile(ref, np.arange(1, bins) / bins))


def bin_shares(x: npt.ArrayLike, edges: npt.ArrayLike) -> FloatArray:
    """Share of ``x`` in each bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    arr = _sample(x, "binned")
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), arr, side="left")
    counts = np.bincount(idx, minlength=len(np.asarray(edges)) + 1)
    return counts / arr.size


def psi_from_shares(
    reference: npt.ArrayLike, serving: npt.ArrayLike, epsilon: float = PSI_EPSILON
) -> float:
    """PSI = sum_i (s_i - r_i) ln(s_i / r_i) over bin shares; shares below ``epsilon``
    are raised to ``epsilon`` (an empty bin would otherwise make PSI infinite)."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    s = np.maximum(np.asarray(serving, dtype=np.float64), epsilon)
    if r.shape != s.shape or r.ndim != 1:
        raise StatsInputError(f"share vectors must have one equal length, got {r.shape} {s.shape}")
    return float(np.sum((s - r) * np.log(s / r)))


def psi(
    reference: npt.ArrayLike,
    serving: npt.ArrayLike,
    *,
    bins: int = PSI_BINS,
    epsilon: float = PSI_EPSILON,
) -> float:
    """Population stability index of ``serving`` against ``reference``.

    Bins are the reference's quantiles (:func:`quantile_edges`), so each holds about
    1/bins of the reference; empty shares are floored at ``epsilon``
    (:func:`psi_from_shares`). 0 means identical binned distributions; it is symmetric in
    the two shares and grows with the shift (about d^2 for a mean shift of d standard
    deviations of a normal, at fine bins).
    """
    edges = quantile_edges(reference, bins)
    return psi_from_shares(bin_shares(reference, edges), bin_shares(serving, edges), epsilon)


@dataclass(frozen=True)
class KSResult(ToDictMixin):
    """Two-sample KS: the largest gap between the ECDFs and its p-value."""

    statistic: Num
    p_value: Num


def ks_test(reference: npt.ArrayLike, serving: npt.ArrayLike) -> KSResult:
    """Two-sided two-sample KS test (:func:`scipy.stats.ks_2samp`, exact p-value for small
    samples, asymptotic otherwise)."""
    res = sps.ks_2samp(_sample(reference, "reference"), _sample(serving, "serving"))
    return KSResult(float(res.statistic), float(res.pvalue))


def centroid(vectors: npt.ArrayLike) -> FloatArray:
    """Mean of the rows of ``vectors`` (an (n, d) array, n >= 1)."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise StatsInputError(f"need an (n, d) array with n >= 1, got shape {v.shape}")
    return np.asarray(v.mean(axis=0), dtype=np.float64)


def cosine_shift(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """1 - cos(a, b) of two vectors (0: same direction, 1: orthogonal, 2: opposite).

    Raises:
        StatsInputError: when a vector is zero (no direction).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0 or ny == 0:
        raise StatsInputError("a centroid is the zero vector; the cosine is undefined")
    return float(1.0 - np.clip(np.dot(x, y) / (nx * ny), -1.0, 1.0))


@dataclass(frozen=True)
class DriftCheck(ToDictMixin):
    """One drift check of one model (results endpoint ``drift`` entries, drift gauges).

    ``check`` is ``scores``, ``popularity`` or ``embedding``; ``alarm`` is
    ``psi > PSI_ALARM or (ks_pvalue < KS_ALPHA and ks_statistic >= KS_MIN_STATISTIC)``.
    ``cosine_shift`` (embedding check only) is 1 - cos between the centroids. A check
    that could not run has ``psi`` etc. None and says why in ``note``.
    """

    check: str
    model: str
    psi: OptNum
    ks_statistic: OptNum
    ks_pvalue: OptNum
    alarm: bool
    n_reference: int
    n_serving: int
    cosine_shift: OptNum = None
    note: str | None = None


def is_alarm(psi_value: float | None, ks: KSResult | None) -> bool:
    """The drift alarm rule (the same as the Prometheus rule in deploy/prometheus)."""
    if psi_value is not None and psi_value > PSI_ALARM:
        return True
    return (
        ks is not None
        and math.isfinite(ks.p_value)
        and ks.p_value < KS_ALPHA
        and ks.statistic >= KS_MIN_STATISTIC
    )


def drift_check(
    check: str,
    model: str,
    reference: npt.ArrayLike,
    serving: npt.ArrayLike,
    *,
    bins: int = PSI_BINS,
    cosine: float | None = None,
) -> DriftCheck:
    """PSI and KS of ``serving`` against ``reference`` as a :class:`DriftCheck`."""
    ref = _sample(reference, "reference")
    srv = _sample(serving, "serving")
    p = psi(ref, srv, bins=bins)
    ks = ks_test(ref, srv)
    return DriftCheck(
        check=check,
        model=model,
        psi=p,
        ks_statistic=ks.statistic,
        ks_pvalue=ks.p_value,
        alarm=is_alarm(p, ks),
        n_reference=int(ref.size),
        n_serving=int(srv.size),
        cosine_shift=cosine,
    )


def skipped_check(
    check: str, model: str, note: str, *, n_reference: int = 0, n_serving: int = 0
) -> DriftCheck:
    """A check that could not run, with the reason."""
    return DriftCheck(check, model, None, None, None, False, n_reference, n_serving, None, note)


__all__ = [
    "KS_ALPHA",
    "KS_MIN_STATISTIC",
    "PSI_ALARM",
    "PSI_BINS",
    "PSI_EPSILON",
    "PSI_WARN",
    "DriftCheck",
    "KSResult",
    "bin_shares",
    "centroid",
    "cosine_shift",
    "drift_check",
    "is_alarm",
    "ks_test",
    "psi",
    "psi_from_shares",
    "quantile_edges",
    "skipped_check",
]
