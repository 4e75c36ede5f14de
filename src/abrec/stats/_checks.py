"""Input validation shared by the statistics modules."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

from abrec.stats.errors import NotTestableError, StatsInputError

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Return `alpha` as float or raise when it is not in (0, 1)."""
    if not isinstance(alpha, int | float) or not 0.0 < float(alpha) < 1.0:
        raise StatsInputError(f"{name} must be a number strictly between 0 and 1, got {alpha!r}.")
    return float(alpha)


def check_alternative(alternative: str) -> Alternative:
    """Return `alternative` or raise when it is not one of the three hypotheses."""
    if alternative not in _ALTERNATIVES:
        raise StatsInputError(
            f"alternative must be one of {', '.join(_ALTERNATIVES)}; got {alternative!r}."
        )
    return cast(Alternative, alternative)


def check_finite(value: float, name: str) -> float:
    """Return `value` as float or raise when it is NaN or infinite."""
    v = float(value)
    if not math.isfinite(v):
        raise StatsInputError(f"{name} must be a finite number, got {value!r}.")
    return v


def check_count(value: int, name: str) -> int:
    """Return a non-negative integer count or raise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float | np.floating) and float(value).is_integer():
            value = int(value)
        else:
            raise StatsInputError(f"{name} must be a non-negative integer, got {value!r}.")
    if value < 0:
        raise StatsInputError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def check_min_units(n_control: int, n_treatment: int, what: str, k: int = 2) -> None:
    """Raise unless both groups have at least `k` units."""
    if n_control < k or n_treatment < k:
        raise NotTestableError(
            f"{what} needs at least {k} units per group, got control={n_control}, "
            f"treatment={n_treatment}; an empty or singleton group usually means wrong "
            "variant labels."
        )


def as_1d(x: npt.ArrayLike, name: str, *, min_size: int = 1) -> npt.NDArray[np.float64]:
    """Return `x` as a finite 1-d float array with at least `min_size` values, or raise."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise StatsInputError(f"{name} must be one-dimensional, got shape {arr.shape}.")
    if arr.size < min_size:
        raise StatsInputError(
            f"{name} needs at least {min_size} value(s), got {arr.size}; "
            "check that the group is not empty."
        )
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise StatsInputError(
            f"{name} contains {bad} NaN or infinite value(s); drop or impute them first."
        )
    return arr


def same_length(arrays: Sequence[npt.NDArray[np.float64]], names: Sequence[str]) -> None:
    """Raise when the arrays do not all have the same length."""
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) > 1:
        desc = ", ".join(f"{n}={a.shape[0]}" for n, a in zip(names, arrays, strict=True))
        raise StatsInputError(f"arrays must have the same length, got {desc}.")


def z_or_t_quantile(q: float, df: float | None) -> float:
    """Quantile `q` of the t distribution with `df` (normal when `df` is None)."""
    from scipy import special

    if df is None or not math.isfinite(df):
        return float(special.ndtri(q))
    return float(special.stdtrit(df, q))
