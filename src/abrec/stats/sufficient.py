"""Sufficient statistics per group: what every test needs, computable in SQL or numpy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from abrec.stats._checks import as_1d, check_count, check_finite, same_length
from abrec.stats.errors import StatsInputError


def _centered(sum_sq: float, sum_: float, n: int) -> float:
    """Sum of squared deviations from the mean, clipped at 0 against rounding."""
    return max(sum_sq - sum_ * sum_ / n, 0.0)


def _cross(sum_ab: float, sum_a: float, sum_b: float, n: int) -> float:
    """Sum of cross-deviations (a - mean a)(b - mean b)."""
    return sum_ab - sum_a * sum_b / n


def _need(n: int, k: int, what: str) -> None:
    if n < k:
        raise StatsInputError(
            f"{what} needs at least {k} unit(s) per group, got n={n}; "
            "collect more data or check the variant labels."
        )


@dataclass(frozen=True)
class MeanStats:
    """Count, sum and sum of squares of a per-unit metric in one group."""

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_count(self.n, "n"))
        object.__setattr__(self, "sum", check_finite(self.sum, "sum"))
        object.__setattr__(self, "sum_sq", check_finite(self.sum_sq, "sum_sq"))
        if self.sum_sq < 0:
            raise StatsInputError(f"sum_sq must be non-negative, got {self.sum_sq}.")
        if self.n > 0 and self.sum * self.sum / self.n > self.sum_sq * (1 + 1e-9) + 1e-9:
            raise StatsInputError(
                "sum_sq is smaller than sum**2 / n, which no data can produce; "
                "pass the sum of squared values, not the squared sum."
            )

    @classmethod
    def from_array(cls, x: npt.ArrayLike) -> MeanStats:
        """Sufficient statistics of a 1-d array of per-unit values (NaN is rejected)."""
        arr = as_1d(x, "x", min_size=0)
        return cls(int(arr.size), float(arr.sum()), float(np.dot(arr, arr)))

    @property
    def mean(self) -> float:
        """Sample mean."""
        _need(self.n, 1, "a mean")
        return self.sum / self.n

    @property
    def var(self) -> float:
        """Sample variance (ddof=1)."""
        _need(self.n, 2, "a variance")
        return _centered(self.sum_sq, self.sum, self.n) / (self.n - 1)

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1)."""
        return math.sqrt(self.var)

    def __add__(self, other: MeanStats) -> MeanStats:
        return MeanStats(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)


def proportion_stats(n: int, successes: int) -> MeanStats:
    """MeanStats of `n` units of 0/1 data with `successes` ones (so sum_sq == sum)."""
    n = check_count(n, "n")
    successes = check_count(successes, "successes")
    if successes > n:
        raise StatsInputError(f"successes ({successes}) cannot exceed n ({n}).")
    return MeanStats(n, float(successes), float(successes))


@dataclass(frozen=True)
class RatioStats:
    """Per-unit numerator/denominator sums for a ratio-of-sums metric (delta method)."""

    n: int
    sum_num: float
    sum_sq_num: float
    sum_den: float
    sum_sq_den: float
    sum_num_den: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_count(self.n, "n"))
        for name in ("sum_num", "sum_sq_num", "sum_den", "sum_sq_den", "sum_num_den"):
            object.__setattr__(self, name, check_finite(getattr(self, name), name))
        if self.sum_sq_num < 0 or self.sum_sq_den < 0:
            raise StatsInputError("sum_sq_num and sum_sq_den must be non-negative.")

    @classmethod
    def from_arrays(cls, num: npt.ArrayLike, den: npt.ArrayLike) -> RatioStats:
        """Sufficient statistics from per-unit numerators and denominators."""
        a = as_1d(num, "num", min_size=0)
        b = as_1d(den, "den", min_size=0)
        same_length([a, b], ["num", "den"])
        return cls(
            int(a.size),
            float(a.sum()),
            float(np.dot(a, a)),
            float(b.sum()),
            float(np.dot(b, b)),
            float(np.dot(a, b)),
        )

    @property
    def ratio(self) -> float:
        """Ratio of sums, sum_num / sum_den."""
        _need(self.n, 1, "a ratio")
        if self.sum_den == 0:
            raise StatsInputError(
                "the denominator sums to 0 in a group, so the ratio is undefined; "
                "check the denominator column (e.g. exposures)."
            )
        return self.sum_num / self.sum_den

    @property
    def var_num(self) -> float:
        """Sample variance of the per-unit numerator."""
        _need(self.n, 2, "a variance")
        return _centered(self.sum_sq_num, self.sum_num, self.n) / (self.n - 1)

    @property
    def var_den(self) -> float:
        """Sample variance of the per-unit denominator."""
        _need(self.n, 2, "a variance")
        return _centered(self.sum_sq_den, self.sum_den, self.n) / (self.n - 1)

    @property
    def cov_num_den(self) -> float:
        """Sample covariance of numerator and denominator."""
        _need(self.n, 2, "a covariance")
        return _cross(self.sum_num_den, self.sum_num, self.sum_den, self.n) / (self.n - 1)

    @property
    def unit_var(self) -> float:
        """Delta-method variance of the ratio times n (Deng et al. 2018, eq. 2)."""
        r = self.ratio
        md = self.sum_den / self.n
        v = (self.var_num - 2.0 * r * self.cov_num_den + r * r * self.var_den) / (md * md)
        return max(v, 0.0)

    def __add__(self, other: RatioStats) -> RatioStats:
        return RatioStats(
            self.n + other.n,
            self.sum_num + other.sum_num,
            self.sum_sq_num + other.sum_sq_num,
            self.sum_den + other.sum_den,
            self.sum_sq_den + other.sum_sq_den,
            self.sum_num_den + other.sum_num_den,
        )


@dataclass(frozen=True)
class CupedStats:
    """Sums of a metric `y` and a pre-period covariate `x` (and their cross-product)."""

    n: int
    sum_y: float
    sum_sq_y: float
    sum_x: float
    sum_sq_x: float
    sum_xy: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_count(self.n, "n"))
        for name in ("sum_y", "sum_sq_y", "sum_x", "sum_sq_x", "sum_xy"):
            object.__setattr__(self, name, check_finite(getattr(self, name), name))
        if self.sum_sq_y < 0 or self.sum_sq_x < 0:
            raise StatsInputError("sum_sq_y and sum_sq_x must be non-negative.")

    @classmethod
    def from_arrays(cls, y: npt.ArrayLike, x: npt.ArrayLike) -> CupedStats:
        """Sufficient statistics from per-unit metric `y` and covariate `x`."""
        a = as_1d(y, "y", min_size=0)
        b = as_1d(x, "x", min_size=0)
        same_length([a, b], ["y", "x"])
        return cls(
            int(a.size),
            float(a.sum()),
            float(np.dot(a, a)),
            float(b.sum()),
            float(np.dot(b, b)),
            float(np.dot(a, b)),
        )

    @property
    def y(self) -> MeanStats:
        """The metric alone."""
        return MeanStats(self.n, self.sum_y, self.sum_sq_y)

    @property
    def x(self) -> MeanStats:
        """The covariate alone."""
        return MeanStats(self.n, self.sum_x, self.sum_sq_x)

    @property
    def cov_xy(self) -> float:
        """Sample covariance of y and x."""
        _need(self.n, 2, "a covariance")
        return _cross(self.sum_xy, self.sum_y, self.sum_x, self.n) / (self.n - 1)

    def __add__(self, other: CupedStats) -> CupedStats:
        return CupedStats(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_sq_y + other.sum_sq_y,
            self.sum_x + other.sum_x,
            self.sum_sq_x + other.sum_sq_x,
            self.sum_xy + other.sum_xy,
        )
