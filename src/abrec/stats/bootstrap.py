"""Vectorised, seeded bootstrap confidence intervals (percentile and BCa) for any statistic."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from abrec.stats._checks import as_1d, check_alpha
from abrec.stats.errors import StatsInputError
from abrec.stats.results import BootstrapResult, Interval

Statistic = Callable[..., Any]
_CHUNK_ELEMENTS = 4_000_000


def _samples(data: Any) -> list[npt.NDArray[np.float64]]:
    if isinstance(data, list | tuple) and data and np.ndim(data[0]) >= 1:
        return [as_1d(d, f"sample {i}", min_size=2) for i, d in enumerate(data)]
    return [as_1d(data, "data", min_size=2)]


def _call(statistic: Statistic, samples: Sequence[npt.NDArray[np.float64]]) -> Any:
    try:
        return np.asarray(statistic(*samples, axis=-1), dtype=np.float64)
    except TypeError as exc:
        raise StatsInputError(
            "statistic must accept the sample(s) and an `axis` keyword and reduce along it, "
            "like numpy.mean; wrap scalar functions with numpy.apply_along_axis."
        ) from exc


def _jackknife(
    statistic: Statistic, samples: list[npt.NDArray[np.float64]]
) -> list[npt.NDArray[np.float64]]:
    """Leave-one-out statistic values for each sample (others held fixed)."""
    out = []
    for j, x in enumerate(samples):
        n = x.size
        base = np.arange(n - 1)
        chunk = max(1, _CHUNK_ELEMENTS // max(n - 1, 1))
        vals = []
        for start in range(0, n, chunk):
            drop = np.arange(start, min(n, start + chunk))
            idx = base[None, :] + (base[None, :] >= drop[:, None])
            rows = drop.size
            args = [
                x[idx] if k == j else np.broadcast_to(s, (rows, s.size))
                for k, s in enumerate(samples)
            ]
            vals.append(np.atleast_1d(_call(statistic, args)))
        out.append(np.concatenate(vals))
    return out


def bootstrap(
    data: npt.ArrayLike | Sequence[npt.ArrayLike],
    statistic: Statistic,
    *,
    n_resamples: int = 9999,
    method: str = "percentile",
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap CI for `statistic(*samples, axis=-1)`.

    Args:
        data: one 1-d array, or a list/tuple of independent 1-d samples (each resampled
            separately, e.g. `(control, treatment)` with `lambda c, t, axis: ...`).
        statistic: vectorised function reducing along `axis` (numpy.mean, numpy.median, ...).
        method: "percentile" or "bca" (bias-corrected and accelerated, Efron 1987).
    """
    if method not in ("percentile", "bca"):
        raise StatsInputError(f"method must be 'percentile' or 'bca', got {method!r}.")
    confidence = check_alpha(confidence, "confidence")
    if not isinstance(n_resamples, int) or n_resamples < 100:
        raise StatsInputError(f"n_resamples must be an integer >= 100, got {n_resamples!r}.")
    samples = _samples(data)
    rng = np.random.default_rng(seed)
    theta_hat = float(_call(statistic, samples))
    if not math.isfinite(theta_hat):
        raise StatsInputError("the statistic is not finite on the original data.")
    largest = max(x.size for x in samples)
    chunk = max(1, _CHUNK_ELEMENTS // largest)
    boots = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        resampled = [x[rng.integers(0, x.size, size=(b, x.size))] for x in samples]
        boots.append(np.atleast_1d(_call(statistic, resampled)))
    theta_b = np.concatenate(boots)
    if not np.isfinite(theta_b).all():
        raise StatsInputError("the statistic returned NaN or inf on some bootstrap resamples.")
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
        for th in _jackknife(statistic, samples):
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
