"""Off-policy evaluation of a recommendation policy from logged bandit feedback (numpy only)."""

from abrec.ope.estimators import (
    ESTIMATORS,
    OPEResult,
    dm,
    dr,
    estimate_all,
    ips,
    ratio_terms,
    snips,
    switch_dr,
)

__all__ = [
    "ESTIMATORS",
    "OPEResult",
    "dm",
    "dr",
    "estimate_all",
    "ips",
    "ratio_terms",
    "snips",
    "switch_dr",
]
