"""The report's typed input: one demo run (offline leaderboard, online results, decision...).

:class:`DemoReport` is what :func:`abrec.report.write_report` renders and what
``results.json`` holds (its JSON dump; :meth:`DemoReport.parse` reads it back). The online
part is the service's own :class:`abrec.experiment.analysis.ExperimentResults`, and the
timeline is the service's running sequential CTR result as observed at each poll.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from abrec.experiment.analysis import ExperimentResults, RunningSequentialResult
from abrec.experiment.spec import ExperimentSpec
from abrec.interleave import InterleavingResult
from abrec.jsonsafe import json_safe
from abrec.simulate.click_model import ClickModel
from abrec.simulate.runner import SimulationProgress
from abrec.stats.results import Interval, Num, OptNum, ToDictMixin


@dataclass(frozen=True)
class Decision(ToDictMixin):
    """What to do: the winning variant (None: no winner), a one-line verdict and why."""

    winner: str | None
    verdict: str
    text: str


@dataclass(frozen=True)
class LeaderboardRow(ToDictMixin):
    """One model's offline metrics (slice "all"): mean over scored users with a 95% CI."""

    model: str
    metrics: dict[str, Interval]


@dataclass(frozen=True)
class OfflineComparison(ToDictMixin):
    """A paired offline comparison of ``model`` against ``baseline`` on ``metric``."""

    model: str
    baseline: str
    metric: str
    difference: Interval
    p_value: OptNum
    test: str = ""


@dataclass(frozen=True)
class OfflineSection(ToDictMixin):
    """The offline evaluation: leaderboard (best primary metric first), paired comparisons."""

    primary_metric: str
    baseline: str
    leaderboard: tuple[LeaderboardRow, ...]
    comparisons: tuple[OfflineComparison, ...] = ()
    protocol: str | None = None
    n_scored_users: int | None = None

    def comparison(self, model: str) -> OfflineComparison | None:
        """The paired comparison of ``model`` against the baseline, if any."""
        return next((c for c in self.comparisons if c.model == model), None)


@dataclass(frozen=True)
class Look(ToDictMixin):
    """One poll of the running experiment: the server's sequential CTR result and the counts."""

    elapsed_s: Num
    units: int
    exposures: int
    clicks: int
    sequential: RunningSequentialResult
    variant: str = "treatment"
    #: True for the poll whose "reject" stopped the run early (the decision is made on it).
    decisive: bool = False

    @property
    def estimate(self) -> float:
        """The server's CTR difference (treatment - control) at this poll."""
        return self.sequential.estimate

    @property
    def low(self) -> float:
        """Lower end of the server's running always-valid CI."""
        return self.sequential.ci.low

    @property
    def high(self) -> float:
        """Upper end of the server's running always-valid CI."""
        return self.sequential.ci.high

    @property
    def p_value(self) -> float:
        """The server's running-minimum always-valid p-value."""
        return self.sequential.p_value

    @property
    def decision(self) -> str:
        """The server's sequential decision ("continue" or "reject")."""
        return self.sequential.decision


@dataclass(frozen=True)
class Agreement(ToDictMixin):
    """Offline difference against the control model next to the online relative lift."""

    variant: str
    offline_metric: str
    offline: Interval | None
    online_metric: str
    online: Interval


@dataclass(frozen=True)
class RunInfo(ToDictMixin):
    """How the run was set up and how it ended (the report's "Run" table)."""

    mode: str
    experiment: str
    control_model: str
    treatment_model: str
    simulated_users: int
    sessions_done: int
    sessions_planned: int
    stopped_by: str
    seed: int
    store: str
    offline_s: OptNum = None
    online_s: OptNum = None
    model_notes: tuple[str, ...] = ()
    """What the served models use when it differs from their config (e.g. frozen vectors)."""

    def rows(self) -> list[tuple[str, str | int | float | None]]:
        """(label, value) pairs in display order."""
        notes = [("models", "; ".join(self.model_notes))] if self.model_notes else []
        return [
            *notes,
            ("mode", self.mode),
            ("experiment", self.experiment),
            ("control model", self.control_model),
            ("treatment model", self.treatment_model),
            ("simulated users", self.simulated_users),
            ("sessions (done / planned)", f"{self.sessions_done} / {self.sessions_planned}"),
            ("stopped by", self.stopped_by),
            ("seed", self.seed),
            ("store", self.store),
            ("offline time (s)", None if self.offline_s is None else round(self.offline_s, 1)),
            ("online time (s)", None if self.online_s is None else round(self.online_s, 1)),
        ]


@dataclass(frozen=True)
class SimulationInfo(ToDictMixin):
    """What the simulated users did and the knobs they ran with."""

    progress: SimulationProgress
    click_model: ClickModel
    sessions_mean: Num
    k: int


@dataclass(frozen=True)
class InterleavingSection(ToDictMixin):
    """The demo's interleaving screen of the same pair, beside the A/B test.

    ``units`` is what each test used when it stopped (the sequential rule decided, or the
    planned sample ran out); ``decided`` whether its always-valid test reached a verdict.
    """

    experiment: str
    method: str
    result: InterleavingResult | None
    units: int
    decided: bool
    verdict: str
    stopped_by: str
    ab_units: int
    ab_decided: bool
    ab_verdict: str


@dataclass(frozen=True)
class DemoReport(ToDictMixin):
    """Everything the report shows; every section but the title is optional."""

    title: str
    decision: Decision | None = None
    run: RunInfo | None = None
    offline: OfflineSection | None = None
    online: ExperimentResults | None = None
    timeline: tuple[Look, ...] = ()
    agreement: tuple[Agreement, ...] = ()
    simulation: SimulationInfo | None = None
    spec: ExperimentSpec | None = None
    timings: dict[str, Num] = field(default_factory=dict)
    interleaving: InterleavingSection | None = None

    def to_json(self) -> str:
        """``results.json``: strict JSON (NaN and ±inf are ``null``), indented."""
        return json.dumps(json_safe(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def parse(cls, data: str | bytes | Mapping[str, Any]) -> DemoReport:
        """Read a report back from ``results.json`` (text or decoded).

        Raises:
            pydantic.ValidationError: when ``data`` is not a report.
        """
        if isinstance(data, str | bytes):
            return REPORT_ADAPTER.validate_json(data)
        return REPORT_ADAPTER.validate_python(data)


#: Parses :class:`DemoReport` from JSON.
REPORT_ADAPTER: TypeAdapter[DemoReport] = TypeAdapter(DemoReport)

__all__ = [
    "Agreement",
    "Decision",
    "DemoReport",
    "LeaderboardRow",
    "Look",
    "OfflineComparison",
    "OfflineSection",
    "RunInfo",
    "SimulationInfo",
]
