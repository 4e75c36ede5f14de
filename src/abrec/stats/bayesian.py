"""Bayesian comparisons: Beta-Binomial for proportions, normal posteriors for means and ratios."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from abrec.stats._checks import check_alpha
from abrec.stats._groups import two_groups
from abrec.stats.errors import StatsInputError
from abrec.stats.frequentist import _check_binary
from abrec.stats.results import BayesResult, Interval
from abrec.stats.sufficient import MeanStats, RatioStats


def _check_common(credibility: float, n_draws: int) -> None:
    check_alpha(credibility, "credibility")
    if not isinstance(n_draws, int) or n_draws < 1000:
        raise StatsInputError(f"n_draws must be an integer >= 1000, got {n_draws!r}.")


def _summarise(
    draws_c: npt.NDArray[np.float64],
    draws_t: npt.NDArray[np.float64],
    credibility: float,
) -> tuple[float, float, float, Interval, Interval]:
    diff = draws_t - draws_c
    lo_q, hi_q = (1.0 - credibility) / 2.0, (1.0 + credibility) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = draws_t / draws_c - 1.0
    rel = rel[np.isfinite(rel)]
    d_lo, d_hi = np.quantile(diff, [lo_q, hi_q])
    r_lo, r_hi = np.quantile(rel, [lo_q, hi_q]) if rel.size else (-math.inf, math.inf)
    mean_c, mean_t = float(draws_c.mean()), float(draws_t.mean())
    return (
        float(np.mean(diff > 0)),
        float(np.mean(np.maximum(-diff, 0.0))),
        float(np.mean(np.maximum(diff, 0.0))),
        Interval(mean_t - mean_c, float(d_lo), float(d_hi)),
        Interval(mean_t / mean_c - 1.0 if mean_c else math.nan, float(r_lo), float(r_hi)),
    )


def bayes_proportions(
    control: MeanStats,
    treatment: MeanStats,
    *,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
    credibility: float = 0.95,
    n_draws: int = 200_000,
    seed: int = 0,
    metric: str = "",
) -> BayesResult:
    """Beta-Binomial comparison; each rate gets a Beta(prior_alpha, prior_beta) prior.

    Probabilities, losses and intervals are Monte Carlo over `n_draws` seeded posterior draws.
    """
    _check_common(credibility, n_draws)
    _check_binary(control, "control")
    _check_binary(treatment, "treatment")
    if not (prior_alpha > 0 and prior_beta > 0):
        raise StatsInputError("prior_alpha and prior_beta must be positive.")
    if control.n == 0 or treatment.n == 0:
        raise StatsInputError("both groups need at least one unit.")
    rng = np.random.default_rng(seed)
    ac, bc = prior_alpha + control.sum, prior_beta + control.n - control.sum
    at, bt = prior_alpha + treatment.sum, prior_beta + treatment.n - treatment.sum
    draws_c = rng.beta(ac, bc, n_draws)
    draws_t = rng.beta(at, bt, n_draws)
    prob, loss, loss_c, ci, rel = _summarise(draws_c, draws_t, credibility)
    return BayesResult(
        method="beta-binomial",
        metric=metric,
        control_mean=ac / (ac + bc),
        treatment_mean=at / (at + bt),
        n_control=control.n,
        n_treatment=treatment.n,
        prob_beat_control=prob,
        expected_loss=loss,
        expected_loss_control=loss_c,
        credible_interval=ci,
        relative=rel,
        credibility=credibility,
        prior=f"Beta({prior_alpha:g}, {prior_beta:g}) on each rate",
    )


def _normal_compare(
    control: MeanStats | RatioStats,
    treatment: MeanStats | RatioStats,
    *,
    what: str,
    method: str,
    metric: str,
    prior_mean: float,
    prior_sd: float,
    credibility: float,
    n_draws: int,
    seed: int,
) -> BayesResult:
    """Normal posteriors N(m, v) for each group mean (v = variance of the mean estimate)."""
    c, t = two_groups(control, treatment, what)
    mc, vc, nc = c.mean, c.var_of_mean, c.n
    mt, vt, nt = t.mean, t.var_of_mean, t.n
    _check_common(credibility, n_draws)
    if vc <= 0 and vt <= 0:
        raise StatsInputError(
            f"{method}: zero variance in both groups; the posterior would be degenerate."
        )
    if not (prior_sd > 0):
        raise StatsInputError("prior_sd must be positive (use math.inf for a flat prior).")

    def posterior(m: float, v: float) -> tuple[float, float]:
        if math.isinf(prior_sd):
            return m, v
        if v == 0:
            return m, 0.0
        prec = 1.0 / v + 1.0 / prior_sd**2
        return (m / v + prior_mean / prior_sd**2) / prec, 1.0 / prec

    pc, qc = posterior(mc, vc)
    pt, qt = posterior(mt, vt)
    m, s = pt - pc, math.sqrt(qc + qt)
    z = m / s
    prob = float(sps.norm.cdf(z))
    loss = s * float(sps.norm.pdf(z)) - m * float(sps.norm.cdf(-z))
    loss_c = s * float(sps.norm.pdf(z)) + m * float(sps.norm.cdf(z))
    q = float(sps.norm.ppf((1.0 + credibility) / 2.0))
    rng = np.random.default_rng(seed)
    draws_c = pc + math.sqrt(qc) * rng.standard_normal(n_draws)
    draws_t = pt + math.sqrt(qt) * rng.standard_normal(n_draws)
    *_, rel = _summarise(draws_c, draws_t, credibility)
    prior = (
        "flat (improper) prior on each mean"
        if math.isinf(prior_sd)
        else f"Normal({prior_mean:g}, {prior_sd:g}^2) on each mean"
    )
    notes: tuple[str, ...] = ()
    if pc <= 0 or pt <= 0:
        notes = ("relative interval from posterior draws; a mean is not positive",)
    return BayesResult(
        method=method,
        metric=metric,
        control_mean=pc,
        treatment_mean=pt,
        n_control=nc,
        n_treatment=nt,
        prob_beat_control=prob,
        expected_loss=loss,
        expected_loss_control=loss_c,
        credible_interval=Interval(m, m - q * s, m + q * s),
        relative=Interval(pt / pc - 1.0 if pc else math.nan, rel.low, rel.high),
        credibility=credibility,
        prior=prior,
        notes=notes,
    )


def bayes_means(
    control: MeanStats,
    treatment: MeanStats,
    *,
    prior_mean: float = 0.0,
    prior_sd: float = math.inf,
    credibility: float = 0.95,
    n_draws: int = 200_000,
    seed: int = 0,
    metric: str = "",
) -> BayesResult:
    """Normal model for each mean with plug-in variance s^2/n and a Normal (or flat) prior."""
    return _normal_compare(
        control,
        treatment,
        what="bayes_means",
        method="bayes-normal",
        metric=metric,
        prior_mean=prior_mean,
        prior_sd=prior_sd,
        credibility=credibility,
        n_draws=n_draws,
        seed=seed,
    )


def bayes_ratio(
    control: RatioStats,
    treatment: RatioStats,
    *,
    prior_mean: float = 0.0,
    prior_sd: float = math.inf,
    credibility: float = 0.95,
    n_draws: int = 200_000,
    seed: int = 0,
    metric: str = "",
) -> BayesResult:
    """Normal model for each ratio of sums with delta-method variance."""
    return _normal_compare(
        control,
        treatment,
        what="bayes_ratio",
        method="bayes-normal-ratio",
        metric=metric,
        prior_mean=prior_mean,
        prior_sd=prior_sd,
        credibility=credibility,
        n_draws=n_draws,
        seed=seed,
    )
