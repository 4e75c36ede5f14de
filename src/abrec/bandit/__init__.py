"""Thompson-sampling bandit allocation and its analysis (numpy; scipy only for the analysis).

`BanditSettings` and the allocation functions import only pydantic and numpy, so an
experiment spec can hold ``bandit: BanditSettings`` cheaply; the analysis names
(`analyse_bandit`, `ips_arm_values`, ...) load `abrec.stats` on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from abrec.bandit.settings import BanditSettings
from abrec.bandit.thompson import apply_min_share, in_burn_in, prob_best, thompson_weights

if TYPE_CHECKING:
    from abrec.bandit.analysis import (
        NOTE,
        ArmValue,
        BanditAnalysis,
        analyse_bandit,
        arm_estimates,
        ips_arm_values,
    )

_LAZY = {"NOTE", "ArmValue", "BanditAnalysis", "analyse_bandit", "arm_estimates", "ips_arm_values"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("abrec.bandit.analysis"), name)
    raise AttributeError(f"module 'abrec.bandit' has no attribute {name!r}")


__all__ = [
    "NOTE",
    "ArmValue",
    "BanditAnalysis",
    "BanditSettings",
    "analyse_bandit",
    "apply_min_share",
    "arm_estimates",
    "in_burn_in",
    "ips_arm_values",
    "prob_best",
    "thompson_weights",
]
