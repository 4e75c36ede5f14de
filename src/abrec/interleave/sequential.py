"""Always-valid sign test: a beta-binomial mixture SPRT on the win share of non-tied units.

Among units that are not tied, let ``X_i = 1`` when the treatment wins. Under H0 the win share
is ``p = 1/2``. With a ``Beta(a, a)`` mixture over ``p`` the likelihood ratio after ``n``
non-tied units with ``s`` wins and ``f = n - s`` losses is

    Lambda_n = B(a + s, a + f) / B(a, a) / (1/2)^n,

a non-negative martingale with mean 1 under H0, so by Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha`` (Robbins 1970; Johari et al. 2017, mSPRT). The
always-valid p-value is ``min(1, 1 / max_{m <= n} Lambda_m)``, valid however often one looks.
Replacing 1/2 by any ``p`` gives the confidence sequence for the win share
``{p : B(a + s, a + f) / B(a, a) / (p^s (1 - p)^f) < 1/alpha}``, an interval around ``s / n``.

``a`` defaults to the normal-mixture calibration of `abrec.stats.sequential.optimal_rho`:
``Var_prior(p) = 1 / (4 (2a + 1)) = rho^2 / 4``, tightest near ``target_n`` non-tied units.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from abrec.stats._checks import check_alpha, check_count
from abrec.stats.errors import StatsInputError
from abrec.stats.sequential import optimal_rho


def prior_a(target_n: int = 1000, alpha: float = 0.05) -> float:
    """Beta(a, a) mixing parameter matched to the normal mixture tightest at `target_n`."""
    rho = optimal_rho(target_n, alpha)
    return max(0.5, (1.0 / (rho * rho) - 1.0) / 2.0)


def _check_a(a: float) -> float:
    if isinstance(a, bool) or not isinstance(a, int | float) or not (a > 0 and math.isfinite(a)):
        raise StatsInputError(f"the Beta prior parameter must be a positive number, got {a!r}.")
    return float(a)


def log_lambda(
    wins: npt.ArrayLike, losses: npt.ArrayLike, a: float, p0: float | npt.ArrayLike = 0.5
) -> npt.NDArray[np.float64]:
    """log of the beta-binomial mixture likelihood ratio against win share `p0` (vectorised)."""
    a = _check_a(a)
    s = np.asarray(wins, dtype=np.float64)
    f = np.asarray(losses, dtype=np.float64)
    p = np.asarray(p0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ll0 = special.xlogy(s, p) + special.xlog1py(f, -p)
    return np.asarray(special.betaln(a + s, a + f) - special.betaln(a, a) - ll0, dtype=np.float64)


def always_valid_pvalues(outcomes: npt.ArrayLike, a: float) -> npt.NDArray[np.float64]:
    """Running always-valid p-value after each unit of a ±1/0 outcome sequence.

    Works on the last axis, so a (runs, units) array gives every run's path at once.
    """
    x = np.asarray(outcomes)
    if x.size and not np.isin(x, (-1, 0, 1)).all():
        raise StatsInputError("outcomes must be +1 (treatment wins), -1 (control wins) or 0.")
    wins = np.cumsum(x == 1, axis=-1)
    losses = np.cumsum(x == -1, axis=-1)
    run_max = np.maximum.accumulate(log_lambda(wins, losses, a), axis=-1)
    return np.asarray(np.minimum(1.0, np.exp(-np.maximum(run_max, 0.0))), dtype=np.float64)


def win_share_sequence(wins: int, losses: int, a: float, alpha: float) -> tuple[float, float]:
    """(low, high) of the (1 - alpha) confidence sequence for the win share at one look."""
    alpha = check_alpha(alpha)
    s, f = check_count(wins, "wins"), check_count(losses, "losses")
    a = _check_a(a)
    n = s + f
    if n == 0:
        return 0.0, 1.0
    bound = math.log(1.0 / alpha)

    def g(p: float) -> float:
        return float(log_lambda(s, f, a, p)) - bound

    mid = min(max(s / n, 1e-300), 1.0 - 1e-16)
    low = 0.0 if s == 0 else float(optimize.brentq(g, 1e-300, mid, xtol=1e-12))
    high = 1.0 if f == 0 else float(optimize.brentq(g, mid, 1.0 - 1e-16, xtol=1e-12))
    return low, high
