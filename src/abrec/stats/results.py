"""Frozen result types returned by the statistics functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, PlainSerializer

from abrec.jsonsafe import json_safe


def _none_to_nan(v: Any) -> Any:
    return math.nan if v is None else v


def _finite_or_none(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


#: p-value below which the sample-ratio check flags a mismatch (the one definition).
SRM_THRESHOLD = 0.001

#: A float that may be undefined (NaN, ±inf): JSON ``null`` on the wire, NaN when parsed back.
Num = Annotated[
    float,
    BeforeValidator(_none_to_nan),
    PlainSerializer(_finite_or_none, return_type=float | None, when_used="json"),
]
#: An optional float (None when not applicable); NaN/±inf also become ``null`` in JSON.
OptNum = Annotated[
    float | None, PlainSerializer(_finite_or_none, return_type=float | None, when_used="json")
]


class ToDictMixin:
    """Mixin giving frozen dataclasses a JSON-safe `to_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict; NaN and ±inf become None."""
        out = json_safe(self)
        assert isinstance(out, dict)
        return out


@dataclass(frozen=True)
class Interval(ToDictMixin):
    """A point estimate with a confidence (or credible) interval [low, high]."""

    estimate: Num
    low: Num
    high: Num

    def contains(self, value: float) -> bool:
        """Whether `value` lies in the closed interval."""
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        """high - low (inf for one-sided intervals)."""
        return self.high - self.low


@dataclass(frozen=True)
class EffectResult(ToDictMixin):
    """Treatment-vs-control effect of a fixed-horizon frequentist test.

    `absolute` is treatment minus control; `relative` is treatment / control - 1.
    """

    method: str
    metric: str
    control_mean: Num
    treatment_mean: Num
    n_control: int
    n_treatment: int
    absolute: Interval
    relative: Interval
    p_value: Num
    alpha: Num
    alternative: str
    variance_reduction: OptNum = None
    notes: tuple[str, ...] = ()
    statistic: OptNum = None
    std_error: OptNum = None
    df: OptNum = None

    @property
    def significant(self) -> bool:
        """Whether p_value < alpha."""
        return self.p_value < self.alpha


@dataclass(frozen=True)
class SequentialResult(ToDictMixin):
    """Always-valid inference on the difference in means at one look (or the running result)."""

    method: str
    metric: str
    estimate: Num
    ci: Interval
    p_value: Num
    decision: Literal["continue", "reject"]
    n_control: int
    n_treatment: int
    alpha: Num
    rho: Num
    control_mean: Num = math.nan
    treatment_mean: Num = math.nan
    looks: int = 1
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SRMResult(ToDictMixin):
    """Chi-square goodness-of-fit test of observed unit counts against the intended split."""

    chi2: Num
    p_value: Num
    mismatch: bool
    expected: tuple[float, ...]
    observed: tuple[int, ...]
    threshold: Num = SRM_THRESHOLD
    df: int = 1


@dataclass(frozen=True)
class BayesResult(ToDictMixin):
    """Posterior comparison of treatment against control.

    `expected_loss` is E[max(control - treatment, 0)], the expected loss of shipping
    treatment; `expected_loss_control` is the loss of keeping control.
    """

    method: str
    metric: str
    control_mean: Num
    treatment_mean: Num
    n_control: int
    n_treatment: int
    prob_beat_control: Num
    expected_loss: Num
    expected_loss_control: Num
    credible_interval: Interval
    relative: Interval
    credibility: Num
    prior: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MannWhitneyResult(ToDictMixin):
    """Mann-Whitney U test (normal approximation with tie and optional continuity correction)."""

    metric: str
    u_statistic: Num
    p_value: Num
    prob_superiority: Num
    n_control: int
    n_treatment: int
    alpha: Num
    alternative: str
    z: Num
    method: str = "mann-whitney"


@dataclass(frozen=True)
class BootstrapResult(ToDictMixin):
    """Bootstrap confidence interval for a statistic."""

    method: str
    interval: Interval
    std_error: Num
    n_resamples: int
    confidence: Num


@dataclass(frozen=True)
class SampleSizeResult(ToDictMixin):
    """Units needed per group to detect `mde` (absolute) with the given power."""

    n_control: int
    n_treatment: int
    n_total: int
    mde: Num
    alpha: Num
    power: Num
    ratio: Num
    alternative: str
