"""Interleaving analysis: per-unit wins / losses / ties, preference, sign tests, mSPRT.

For a pair (control, treatment) and per-unit outcomes ``o_u`` in {+1, -1, 0} (+1: the
treatment's summed credit is higher):

* preference ``Delta = (wins - losses) / (wins + losses + ties)`` = mean of ``o_u`` (Chapelle
  et al. 2012), with a seeded percentile bootstrap CI over units;
* the two-sided exact binomial sign test of ``wins ~ Binomial(wins + losses, 1/2)`` (ties
  dropped), Holm-adjusted across pairs when more than two rankers are multileaved;
* the always-valid beta-binomial mSPRT on the same wins and losses (`abrec.interleave.sequential`),
  taking units in order of their first impression.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from abrec.interleave.algorithms import Method
from abrec.interleave.credit import Impression, check_names, outcomes_from_credits, unit_credits
from abrec.interleave.sequential import always_valid_pvalues, prior_a, win_share_sequence
from abrec.stats._checks import check_alpha, check_count
from abrec.stats.bootstrap import bootstrap
from abrec.stats.errors import NotTestableError, StatsInputError
from abrec.stats.multiple import holm
from abrec.stats.results import Interval, Num, ToDictMixin


@dataclass(frozen=True)
class SequentialSignResult(ToDictMixin):
    """Always-valid sign test: p-value (running minimum over looks) and win-share sequence."""

    p_value: Num
    win_share: Interval
    decision: Literal["continue", "reject"]
    alpha: Num
    prior_a: Num
    looks: int
    method: str = "beta-binomial-msprt"


@dataclass(frozen=True)
class PairPreference(ToDictMixin):
    """Treatment vs control from per-unit interleaving outcomes (wins are the treatment's)."""

    control: str
    treatment: str
    wins: int
    losses: int
    ties: int
    preference: Interval
    win_share: Num
    p_value: Num
    p_adjusted: Num
    alpha: Num
    sequential: SequentialSignResult
    test: str = "binomial-sign-test"

    @property
    def n_units(self) -> int:
        """Units compared (wins + losses + ties)."""
        return self.wins + self.losses + self.ties

    @property
    def significant(self) -> bool:
        """Whether the (Holm-adjusted) sign-test p-value is below alpha."""
        return self.p_adjusted < self.alpha


@dataclass(frozen=True)
class InterleavingResult(ToDictMixin):
    """Analysis of an interleaving (or multileaving) experiment."""

    method: str
    names: tuple[str, ...]
    n_units: int
    n_impressions: int
    primary: PairPreference
    pairs: tuple[PairPreference, ...]
    alpha: Num
    notes: tuple[str, ...] = ()

    def preference_matrix(self) -> list[list[float]]:
        """M[i][j] = preference of names[j] over names[i] (antisymmetric, zero diagonal)."""
        idx = {n: i for i, n in enumerate(self.names)}
        m = [[0.0] * len(self.names) for _ in self.names]
        for p in self.pairs:
            i, j = idx[p.control], idx[p.treatment]
            m[i][j] = p.preference.estimate
            m[j][i] = -p.preference.estimate
        return m


def sign_test_pvalues(wins: npt.ArrayLike, losses: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Two-sided exact binomial sign test p-values, vectorised (1 where there is no non-tie).

    For p = 1/2 the binomial is symmetric, so the two-sided p-value of
    `scipy.stats.binomtest` is min(1, 2 P(X <= min(wins, losses))).
    """
    w = np.asarray(wins, dtype=np.int64)
    lo = np.asarray(losses, dtype=np.int64)
    if (w < 0).any() or (lo < 0).any():
        raise StatsInputError("wins and losses must be non-negative counts.")
    p = 2.0 * sps.binom.cdf(np.minimum(w, lo), w + lo, 0.5)
    return np.asarray(np.minimum(1.0, np.where(w + lo == 0, 1.0, p)), dtype=np.float64)


def _outcomes(outcomes: npt.ArrayLike) -> npt.NDArray[np.int64]:
    x = np.asarray(outcomes)
    if x.ndim != 1:
        raise StatsInputError(f"outcomes must be one-dimensional, got shape {x.shape}.")
    if x.size and not np.isin(x, (-1, 0, 1)).all():
        raise StatsInputError("outcomes must be +1 (treatment wins), -1 (control wins) or 0.")
    if x.size < 2:
        raise NotTestableError(
            f"an interleaving comparison needs at least 2 units with impressions, got {x.size}."
        )
    return x.astype(np.int64)


def preference_test(
    outcomes: npt.ArrayLike,
    *,
    control: str = "A",
    treatment: str = "B",
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
    a: float | None = None,
    target_n: int = 1000,
) -> PairPreference:
    """Preference, bootstrap CI, sign test and mSPRT from per-unit ±1/0 outcomes (unit order).

    Args:
        outcomes: +1 treatment wins, -1 control wins, 0 tie; one per unit, in arrival order.
        a: Beta(a, a) mixing parameter of the mSPRT; default `prior_a(target_n, alpha)`.
            Fix it (or `target_n`, non-tied units) before the experiment starts.
    """
    alpha = check_alpha(alpha)
    x = _outcomes(outcomes)
    a = prior_a(check_count(target_n, "target_n"), alpha) if a is None else a
    wins, losses = int(np.sum(x == 1)), int(np.sum(x == -1))
    ties = x.size - wins - losses
    boot = bootstrap(x, np.mean, n_resamples=n_resamples, confidence=1.0 - alpha, seed=seed)
    p_seq = float(always_valid_pvalues(x, a)[-1])
    low, high = win_share_sequence(wins, losses, a, alpha)
    share = wins / (wins + losses) if wins + losses else math.nan
    p = float(sign_test_pvalues(wins, losses))
    return PairPreference(
        control=control,
        treatment=treatment,
        wins=wins,
        losses=losses,
        ties=ties,
        preference=boot.interval,
        win_share=share,
        p_value=p,
        p_adjusted=p,
        alpha=alpha,
        sequential=SequentialSignResult(
            p_value=p_seq,
            win_share=Interval(share, low, high),
            decision="reject" if p_seq <= alpha else "continue",
            alpha=alpha,
            prior_a=a,
            looks=x.size,
        ),
    )


def analyze_interleaving(
    method: Method,
    names: Sequence[str],
    impressions: Iterable[Impression],
    *,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
    a: float | None = None,
    target_n: int = 1000,
) -> InterleavingResult:
    """Analyse stored impressions: every pair of rankers, Holm-adjusted when more than two.

    Args:
        names: ranker names in the experiment's order; names[0] is the control and the
            primary comparison is names[0] (control) vs names[1] (treatment).
        impressions: (unit, sources, clicked) per shown merged list, in arrival order.
    """
    m, names = check_names(method, names)
    imps = list(impressions)
    credits = unit_credits(m, names, imps)
    pairs = []
    for i, j in itertools.combinations(range(len(names)), 2):
        out = outcomes_from_credits(credits, names[i], names[j])
        pairs.append(
            preference_test(
                list(out.values()),
                control=names[i],
                treatment=names[j],
                alpha=alpha,
                n_resamples=n_resamples,
                seed=seed,
                a=a,
                target_n=target_n,
            )
        )
    notes: tuple[str, ...] = ()
    if len(pairs) > 1:
        adj = holm([p.p_value for p in pairs])
        pairs = [
            PairPreference(**{**p.__dict__, "p_adjusted": float(q)})
            for p, q in zip(pairs, adj, strict=True)
        ]
        notes = (f"sign-test p-values Holm-adjusted over {len(pairs)} pairs",)
    if not any(p.wins + p.losses for p in pairs):
        notes = (*notes, "no unit preferred either ranker: every unit is a tie")
    return InterleavingResult(
        method=m,
        names=tuple(names),
        n_units=len(credits),
        n_impressions=len(imps),
        primary=pairs[0],
        pairs=tuple(pairs),
        alpha=check_alpha(alpha),
        notes=notes,
    )
