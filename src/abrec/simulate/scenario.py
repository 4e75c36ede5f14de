"""Experiment specs for simulated A/B and A/A tests (sent to the admin API)."""

from __future__ import annotations

from typing import Any


def experiment_spec(
    experiment_id: str,
    control_model: str,
    treatment_model: str,
    *,
    aa: bool = False,
    seed: str | None = None,
    weights: tuple[float, float] = (0.5, 0.5),
    guardrails: tuple[str, ...] = ("exposures_per_unit",),
    alpha: float = 0.05,
    planned_units: int | None = None,
) -> dict[str, Any]:
    """Two-arm spec (`control`, `treatment`); in A/A mode both arms serve `control_model`.

    `planned_units` (the simulated users) tunes the always-valid sequential test.
    """
    return {
        "id": experiment_id,
        "seed": seed or experiment_id,
        "hash_version": 2,
        "variants": [
            {"name": "control", "weight": weights[0], "model": control_model},
            {
                "name": "treatment",
                "weight": weights[1],
                "model": control_model if aa else treatment_model,
            },
        ],
        "coverage": 1.0,
        "status": "draft",
        "primary_metric": "ctr",
        "guardrails": list(guardrails),
        "sticky": True,
        "alpha": alpha,
        "control": "control",
        "planned_units": planned_units,
    }
