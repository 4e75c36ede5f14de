"""Sample-ratio mismatch: chi-square goodness of fit of unit counts to the intended split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from abrec.stats._checks import check_alpha
from abrec.stats.errors import StatsInputError
from abrec.stats.results import SRM_THRESHOLD, SRMResult


def srm_test(
    observed: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SRMResult:
    """Pearson chi-square test of observed counts per variant against `weights` (any scale)."""
    threshold = check_alpha(threshold, "threshold")
    obs = np.asarray(observed, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if obs.ndim != 1 or w.ndim != 1 or obs.size != w.size:
        raise StatsInputError(
            f"observed ({obs.size}) and weights ({w.size}) need one entry per variant."
        )
    if obs.size < 2:
        raise StatsInputError("an SRM test needs at least two variants.")
    if not (np.isfinite(obs).all() and np.isfinite(w).all()):
        raise StatsInputError("observed counts and weights must be finite numbers.")
    if (obs < 0).any() or not np.equal(np.round(obs), obs).all():
        raise StatsInputError("observed counts must be non-negative integers.")
    if (w <= 0).any():
        raise StatsInputError("every allocation weight must be positive.")
    total = obs.sum()
    if total == 0:
        raise StatsInputError("no units observed: every variant count is 0.")
    expected = w / w.sum() * total
    chi2 = float(np.sum((obs - expected) ** 2 / expected))
    df = obs.size - 1
    p = float(sps.chi2.sf(chi2, df))
    return SRMResult(
        chi2=chi2,
        p_value=p,
        mismatch=p < threshold,
        expected=tuple(float(e) for e in expected),
        observed=tuple(int(o) for o in obs),
        threshold=threshold,
        df=df,
    )
