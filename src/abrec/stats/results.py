"""Frozen result types returned by the statistics functions."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


def json_safe(value: Any) -> Any:
    """Convert a value (dataclass, dict, sequence, numpy) to JSON-ready Python; NaN/±inf -> None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


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

    estimate: float
    low: float
    high: float

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
    control_mean: float
    treatment_mean: float
    n_control: int
    n_treatment: int
    absolute: Interval
    relative: Interval
    p_value: float
    alpha: float
    alternative: str
    variance_reduction: float | None = None
    notes: tuple[str, ...] = ()
    statistic: float | None = None
    std_error: float | None = None
    df: float | None = None

    @property
    def significant(self) -> bool:
        """Whether p_value < alpha."""
        return self.p_value < self.alpha


@dataclass(frozen=True)
class SequentialResult(ToDictMixin):
    """Always-valid inference on the difference in means at one look (or the running result)."""

    method: str
    metric: str
    estimate: float
    ci: Interval
    p_value: float
    decision: Literal["continue", "reject"]
    n_control: int
    n_treatment: int
    alpha: float
    rho: float
    control_mean: float = math.nan
    treatment_mean: float = math.nan
    looks: int = 1
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SRMResult(ToDictMixin):
    """Chi-square goodness-of-fit test of observed unit counts against the intended split."""

    chi2: float
    p_value: float
    mismatch: bool
    expected: tuple[float, ...]
    observed: tuple[int, ...]
    threshold: float = 0.001
    df: int = 1


@dataclass(frozen=True)
class BayesResult(ToDictMixin):
    """Posterior comparison of treatment against control.

    `expected_loss` is E[max(control - treatment, 0)], the expected loss of shipping
    treatment; `expected_loss_control` is the loss of keeping control.
    """

    method: str
    metric: str
    control_mean: float
    treatment_mean: float
    n_control: int
    n_treatment: int
    prob_beat_control: float
    expected_loss: float
    expected_loss_control: float
    credible_interval: Interval
    relative: Interval
    credibility: float
    prior: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MannWhitneyResult(ToDictMixin):
    """Mann-Whitney U test (normal approximation with tie and optional continuity correction)."""

    metric: str
    u_statistic: float
    p_value: float
    prob_superiority: float
    n_control: int
    n_treatment: int
    alpha: float
    alternative: str
    z: float
    method: str = "mann-whitney"


@dataclass(frozen=True)
class BootstrapResult(ToDictMixin):
    """Bootstrap confidence interval for a statistic."""

    method: str
    interval: Interval
    std_error: float
    n_resamples: int
    confidence: float


@dataclass(frozen=True)
class SampleSizeResult(ToDictMixin):
    """Units needed per group to detect `mde` (absolute) with the given power."""

    n_control: int
    n_treatment: int
    n_total: int
    mde: float
    alpha: float
    power: float
    ratio: float
    alternative: str
