"""Per-group moments shared by the frequentist, Bayesian and sequential two-group tests."""

from __future__ import annotations

from typing import NamedTuple

from abrec.stats._checks import check_min_units
from abrec.stats.sufficient import MeanStats, RatioStats


class Moments(NamedTuple):
    """Mean, per-unit variance and size of one group: all a two-group comparison needs."""

    mean: float
    var: float
    n: int

    @property
    def var_of_mean(self) -> float:
        """Variance of the group mean, var / n."""
        return self.var / self.n


def moments(s: MeanStats | RatioStats) -> Moments:
    """Mean and sample variance of a per-unit metric, or ratio and delta-method unit variance."""
    if isinstance(s, RatioStats):
        return Moments(s.ratio, s.unit_var, s.n)
    return Moments(s.mean, s.var, s.n)


def two_groups(
    control: MeanStats | RatioStats, treatment: MeanStats | RatioStats, what: str
) -> tuple[Moments, Moments]:
    """Moments of control and treatment after checking that each has at least 2 units."""
    check_min_units(control.n, treatment.n, what)
    return moments(control), moments(treatment)
