"""Sufficient statistics per group: what every test needs, computable in SQL or numpy."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt

from abrec.stats._checks import as_1d, check_count, check_finite, same_length
from abrec.stats.errors import NotTestableError, StatsInputError


def _centered(sum_sq: float, sum_: float, n: int) -> float:
    """Sum of squared deviations from the mean, clipped at 0 against rounding."""
    return max(sum_sq - sum_ * sum_ / n, 0.0)


def _cross(sum_ab: float, sum_a: float, sum_b: float, n: int) -> float:
    """Sum of cross-deviations (a - mean a)(b - mean b)."""
    return sum_ab - sum_a * sum_b / n


def _need(n: int, k: int, what: str) -> None:
    if n < k:
        raise NotTestableError(
            f"{what} needs at least {k} unit(s) per group, got n={n}; "
            "collect more data or check the variant labels."
        )


def _pair_sums(
    a: npt.ArrayLike, b: npt.ArrayLike, names: tuple[str, str]
) -> tuple[int, float, float, float, float, float]:
    """n, sum a, sum a^2, sum b, sum b^2 and sum ab of two aligned per-unit arrays."""
    x = as_1d(a, names[0], min_size=0)
    y = as_1d(b, names[1], min_size=0)
    same_length([x, y], names)
    return (
        int(x.size),
        float(x.sum()),
        float(np.dot(x, x)),
        float(y.sum()),
        float(np.dot(y, y)),
        float(np.dot(x, y)),
    )


class _Sums:
    """Validation and addition for frozen dataclasses of a count `n` followed by float sums."""

    n: int
    _squares: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        object.__setattr__(self, "n", check_count(self.n, "n"))
        for name in names[1:]:
            object.__setattr__(self, name, check_finite(getattr(self, name), name))
        for name in self._squares:
            if getattr(self, name) < 0:
                raise StatsInputError(f"{name} must be non-negative, got {getattr(self, name)}.")

    def __add__(self, other: Self) -> Self:
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return type(self)(*(getattr(self, f.name) + getattr(other, f.name) for f in fields))


@dataclass(frozen=True)
class MeanStats(_Sums):
    """Count, sum and sum of squares of a per-unit metric in one group."""

    n: int
    sum: float
    sum_sq: float
    _squares = ("sum_sq",)

    def __post_init__(self) -> None:
        super().__post_init__()
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


def proportion_stats(n: int, successes: int) -> MeanStats:
    """MeanStats of `n` units of 0/1 data with `successes` ones (so sum_sq == sum)."""
    n = check_count(n, "n")
    successes = check_count(successes, "successes")
    if successes > n:
        raise StatsInputError(f"successes ({successes}) cannot exceed n ({n}).")
    return MeanStats(n, float(successes), float(successes))


@dataclass(frozen=True)
class RatioStats(_Sums):
    """Per-unit numerator/denominator sums for a ratio-of-sums metric (delta method)."""

    n: int
    sum_num: float
    sum_sq_num: float
    sum_den: float
    sum_sq_den: float
    sum_num_den: float
    _squares = ("sum_sq_num", "sum_sq_den")

    @classmethod
    def from_arrays(cls, num: npt.ArrayLike, den: npt.ArrayLike) -> RatioStats:
        """Sufficient statistics from per-unit numerators and denominators."""
        return cls(*_pair_sums(num, den, ("num", "den")))

    @property
    def ratio(self) -> float:
        """Ratio of sums, sum_num / sum_den."""
        _need(self.n, 1, "a ratio")
        if self.sum_den == 0:
            raise NotTestableError(
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


@dataclass(frozen=True)
class CupedStats(_Sums):
    """Sums of a metric `y` and a pre-period covariate `x` (and their cross-product)."""

    n: int
    sum_y: float
    sum_sq_y: float
    sum_x: float
    sum_sq_x: float
    sum_xy: float
    _squares = ("sum_sq_y", "sum_sq_x")

    @classmethod
    def from_arrays(cls, y: npt.ArrayLike, x: npt.ArrayLike) -> CupedStats:
        """Sufficient statistics from per-unit metric `y` and covariate `x`."""
        return cls(*_pair_sums(y, x, ("y", "x")))

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
