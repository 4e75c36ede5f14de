"""One online experiment through the running service: create, start, simulate users, watch
the server's results, stop early when a rule says so, stop, read the final results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from abrec.errors import AbrecError
from abrec.experiment.analysis import ExperimentResults
from abrec.simulate.population import SimUser
from abrec.simulate.runner import SimulationConfig, SimulationProgress, Simulator

if TYPE_CHECKING:
    from rich.console import Console


class OnlineError(AbrecError, RuntimeError):
    """The service refused a step of an online experiment, or the simulation failed."""


StopRule = Callable[[ExperimentResults], bool]


@dataclass(frozen=True)
class OnlineOutcome:
    """What one online experiment produced."""

    experiment: str
    results: ExperimentResults | None
    units: int
    stopped_by: str
    progress: SimulationProgress


def check(resp: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON body of a successful answer; OnlineError naming the step otherwise."""
    if resp.status_code >= 300:
        raise OnlineError(f"{what}: the service answered {resp.status_code}: {resp.text[:300]}")
    data = resp.json()
    return data if isinstance(data, dict) else {"items": data}


def fetch_results(http: httpx.Client, exp_id: str) -> ExperimentResults | None:
    """The server's analysis, or None while it cannot analyse yet (409)."""
    resp = http.get(f"/v1/experiments/{exp_id}/results")
    if resp.status_code == 409:
        return None
    check(resp, f"results of {exp_id}")
    return ExperimentResults.parse(resp.content)


def units_of(results: ExperimentResults | None) -> int:
    """Units with exposures so far (interleaving: units with an impression)."""
    if results is None:
        return 0
    if results.interleaving is not None:
        return int(results.interleaving.n_units)
    return int(sum(v.n for v in results.variants))


def run_experiment(
    http: httpx.Client,
    spec: dict[str, Any],
    users: list[SimUser],
    sim_config: SimulationConfig,
    *,
    stop_when: StopRule | None = None,
    min_units: int = 0,
    poll_s: float = 1.0,
    console: Console | None = None,
    label: str = "",
) -> OnlineOutcome:
    """Run one experiment end to end (see the module docstring).

    Ctrl-C stops the simulated traffic, stops the experiment (so the store holds a stopped
    experiment and every acknowledged event) and re-raises.
    """
    exp_id = str(spec["id"])
    sim = Simulator(str(http.base_url), users, sim_config)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["progress"] = sim.run()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"abrec-sim-{exp_id}", daemon=True)
    stopped_by = "planned sample reached"
    last_print = 0.0
    try:
        check(http.post("/v1/admin/experiments", json=spec), f"create {exp_id}")
        check(http.post(f"/v1/admin/experiments/{exp_id}/start"), f"start {exp_id}")
        thread.start()
        while thread.is_alive():
            thread.join(timeout=poll_s)
            polled = fetch_results(http, exp_id)
            n = units_of(polled)
            if console is not None and time.monotonic() - last_print > 5.0:
                p = sim.progress()
                console.print(
                    f"  {label} {p.sessions_done}/{p.sessions_planned} sessions, {n} units",
                    highlight=False,
                )
                last_print = time.monotonic()
            if (
                polled is not None
                and stop_when is not None
                and not sim.stopped
                and n >= min_units
                and stop_when(polled)
            ):
                stopped_by = "sequential test decided"
                sim.stop()
    except BaseException:  # Ctrl-C or a failed step: leave the experiment stopped
        sim.stop()
        if thread.is_alive():
            thread.join()
        http.post(f"/v1/admin/experiments/{exp_id}/stop")  # a 404 when it was never created
        raise
    check(http.post(f"/v1/admin/experiments/{exp_id}/stop"), f"stop {exp_id}")
    if "error" in outcome:
        raise OnlineError(f"simulation of {exp_id} failed: {outcome['error']}") from outcome[
            "error"
        ]
    results = fetch_results(http, exp_id)
    return OnlineOutcome(exp_id, results, units_of(results), stopped_by, outcome["progress"])
