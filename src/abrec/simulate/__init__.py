"""Simulated users that drive the real HTTP service (never imported by production code)."""

from abrec.simulate.click_model import ClickModel
from abrec.simulate.population import Population, SimUser
from abrec.simulate.runner import (
    SimulationConfig,
    SimulationError,
    SimulationProgress,
    Simulator,
    session_plan,
)
from abrec.simulate.scenario import experiment_spec

__all__ = [
    "ClickModel",
    "Population",
    "SimUser",
    "SimulationConfig",
    "SimulationError",
    "SimulationProgress",
    "Simulator",
    "experiment_spec",
    "session_plan",
]
