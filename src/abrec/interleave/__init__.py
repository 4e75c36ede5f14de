"""Interleaved and multileaved comparison of rankers: merging, click credit, analysis.

Pure library (numpy/scipy and `abrec.stats`); the service stores ``sources`` per exposure and
calls `credit` / `analyze_interleaving` on what it stored.
"""

from abrec.interleave.algorithms import (
    MAX_OUTCOMES,
    METHODS,
    Interleaving,
    Method,
    Outcome,
    enumerate_outcomes,
    interleave,
)
from abrec.interleave.analysis import (
    InterleavingResult,
    PairPreference,
    SequentialSignResult,
    analyze_interleaving,
    preference_test,
    sign_test_pvalues,
)
from abrec.interleave.credit import (
    Impression,
    credit,
    parse_balanced_source,
    unit_credits,
    unit_outcomes,
)
from abrec.interleave.sequential import always_valid_pvalues, prior_a, win_share_sequence

__all__ = [
    "MAX_OUTCOMES",
    "METHODS",
    "Impression",
    "Interleaving",
    "InterleavingResult",
    "Method",
    "Outcome",
    "PairPreference",
    "SequentialSignResult",
    "always_valid_pvalues",
    "analyze_interleaving",
    "credit",
    "enumerate_outcomes",
    "interleave",
    "parse_balanced_source",
    "preference_test",
    "prior_a",
    "sign_test_pvalues",
    "unit_credits",
    "unit_outcomes",
    "win_share_sequence",
]
