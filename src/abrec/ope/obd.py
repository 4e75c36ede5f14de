"""Validation of the OPE estimators on the Open Bandit Dataset (Saito et al. 2021).

The dataset logs a real A/B test of two policies on the same traffic: uniform random and
Bernoulli Thompson sampling (BTS). Each policy's mean click rate on its own log is an
on-policy ground truth for the other log's off-policy estimate:

- ``random_from_bts``: the random policy's CTR estimated from the BTS log, with
  pi_e(item, slot) = 1 / n_items;
- ``bts_from_random``: BTS's CTR estimated from the random log, with pi_e(item, slot) the
  Monte Carlo slot marginals of BTS under the production prior (`prior_bts.yaml`).

Every logged row is one (round, slot); the estimators use the slot-wise probabilities and
the bootstrap resamples whole rounds (rows with one timestamp). The relative error
(estimate - truth) / truth gets a bootstrap CI that resamples both logs independently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from abrec.data.open_bandit import CAMPAIGNS, BanditLog, load_bts_prior, load_open_bandit
from abrec.errors import ConfigError, DataError
from abrec.jsonsafe import json_safe
from abrec.ope.estimators import ESTIMATORS, ratio_terms
from abrec.ope.policies import bts_action_dist, uniform_action_dist
from abrec.ope.reward_model import crossfit_item_slot_ctr
from abrec.stats.bootstrap import Paired, bootstrap

FloatArray = npt.NDArray[np.float64]
#: Slots per round in the Open Bandit Dataset.
LEN_LIST = 3


@dataclass(frozen=True)
class OnPolicyValue:
    """A policy's mean reward on its own log, with a round-resampling bootstrap CI."""

    policy: str
    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class EstimatorCheck:
    """One estimator's off-policy estimate and its relative error against the truth."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    rel_error: float
    rel_ci_low: float
    rel_ci_high: float


@dataclass(frozen=True)
class DirectionValidation:
    """Estimates of ``evaluation_policy``'s value from ``logging_policy``'s log.

    Attributes:
        truth: the evaluation policy's on-policy value (its own log).
        estimates: one `EstimatorCheck` per estimator, in `ESTIMATORS` order.
        n_logged, n_rounds: rows and rounds of the log used for the estimates.
        mean_weight, max_weight: mean and largest importance weight pi_e / pi_0 on that
            log; the mean has expectation 1 when the logged propensities are right and pi_e
            sums to 1 over items in each slot (a click-free check of the propensities).
        prior_strength: the reward model's prior strength per cross-fitting fold.
    """

    campaign: str
    evaluation_policy: str
    logging_policy: str
    truth: OnPolicyValue
    estimates: tuple[EstimatorCheck, ...]
    n_logged: int
    n_rounds: int
    mean_weight: float
    max_weight: float
    prior_strength: tuple[float, ...]

    def check(self, estimator: str) -> EstimatorCheck:
        """The `EstimatorCheck` of ``estimator``."""
        for c in self.estimates:
            if c.estimator == estimator:
                return c
        raise KeyError(f"no estimator {estimator!r}; have {[c.estimator for c in self.estimates]}")


@dataclass(frozen=True)
class OBDValidation:
    """Both directions of the validation on one campaign, and the settings used."""

    campaign: str
    random_from_bts: DirectionValidation
    bts_from_random: DirectionValidation
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and inf become None)."""
        out = json_safe(self)
        assert isinstance(out, dict)
        return out


def _ratio(num: FloatArray, den: FloatArray, axis: int = -1) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return num.sum(axis=axis) / den.sum(axis=axis)


def _relative(
    num: FloatArray, den: FloatArray, clicks: FloatArray, ones: FloatArray, axis: int = -1
) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _ratio(num, den, axis) / _ratio(clicks, ones, axis) - 1.0


def _rounds(log: BanditLog) -> npt.NDArray[Any]:
    """Round id of each row: rows logged at the same timestamp belong to one round."""
    return np.asarray(log.timestamps)


def on_policy_value(
    log: BanditLog, *, n_boot: int = 1000, level: float = 0.95, seed: int | None = 0
) -> OnPolicyValue:
    """Mean reward of ``log`` with a percentile bootstrap CI over whole rounds."""
    r = np.asarray(log.rewards, dtype=np.float64)
    res = bootstrap(
        Paired(r, np.ones_like(r), clusters=_rounds(log)),
        _ratio,
        n_resamples=n_boot,
        confidence=level,
        seed=seed,
    )
    return OnPolicyValue(
        log.policy, res.interval.estimate, res.interval.low, res.interval.high, len(log)
    )


def validate_direction(
    logged: BanditLog,
    target: BanditLog,
    action_dist_e: Any,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    n_folds: int = 3,
    prior_strength: float | None = None,
    tau: float = math.inf,
    seed: int | None = 0,
) -> DirectionValidation:
    """Estimate ``target.policy``'s value from ``logged`` and compare with ``target``'s mean.

    ``action_dist_e[i, k]`` is the evaluation policy's probability of item i in slot k.
    DM, DR and switch-DR use a K-fold cross-fitted (item, slot) reward model fitted on
    ``logged`` (`abrec.ope.reward_model`); its fitting is not resampled by the bootstrap.
    """
    pi = np.asarray(action_dist_e, dtype=np.float64)
    n_items = logged.n_actions
    if pi.shape != (n_items, LEN_LIST):
        raise DataError(
            f"action_dist_e must have shape (n_items, slots) = ({n_items}, {LEN_LIST}); "
            f"got {pi.shape}."
        )
    if logged.campaign != target.campaign:
        raise DataError(
            f"the logs come from different campaigns ({logged.campaign!r} and "
            f"{target.campaign!r}); load both for the same campaign."
        )
    a, k = logged.actions, logged.positions
    if len(k) and int(k.max()) >= LEN_LIST:
        raise DataError(f"positions must lie in 0..{LEN_LIST - 1}; got {int(k.max())}.")
    rounds = _rounds(logged)
    cf = crossfit_item_slot_ctr(
        a,
        k,
        logged.rewards,
        n_items,
        LEN_LIST,
        rounds=rounds,
        n_folds=n_folds,
        prior_strength=prior_strength,
        seed=seed,
    )
    w = pi[a, k]
    terms = ratio_terms(
        logged.rewards,
        logged.pscore,
        w,
        cf.q_logged(a, k),
        cf.q_policy(k, pi),
        tau=tau,
    )
    truth = on_policy_value(target, n_boot=n_boot, level=level, seed=seed)
    t_r = np.asarray(target.rewards, dtype=np.float64)
    truth_sample = Paired(t_r, np.ones_like(t_r), clusters=_rounds(target))
    checks = []
    for name in ESTIMATORS:
        num, den = terms[name]
        if den.sum() <= 0:
            raise DataError(
                f"{name} is undefined: the evaluation policy gives zero probability to every "
                "logged (item, slot)."
            )
        sample = Paired(num, den, clusters=rounds)
        common: dict[str, Any] = {
            "n_resamples": n_boot,
            "confidence": level,
            "seed": seed,
            "nonfinite": "omit",
        }
        est = bootstrap(sample, _ratio, **common).interval
        rel = bootstrap([sample, truth_sample], _relative, **common).interval
        checks.append(
            EstimatorCheck(name, est.estimate, est.low, est.high, rel.estimate, rel.low, rel.high)
        )
    return DirectionValidation(
        campaign=logged.campaign,
        evaluation_policy=target.policy,
        logging_policy=logged.policy,
        truth=truth,
        estimates=tuple(checks),
        n_logged=len(logged),
        n_rounds=int(np.unique(rounds).size),
        mean_weight=float((w / logged.pscore).mean()),
        max_weight=float((w / logged.pscore).max()),
        prior_strength=cf.prior_strength,
    )


def validate(
    campaign: str = "all",
    *,
    data_dir: str | Path | None = None,
    n_sim: int = 100_000,
    n_boot: int = 1000,
    level: float = 0.95,
    n_folds: int = 3,
    prior_strength: float | None = None,
    tau: float = math.inf,
    seed: int | None = 0,
    bts_dist: Callable[..., FloatArray] = bts_action_dist,
) -> OBDValidation:
    """Both directions of the OBD validation for ``campaign`` (see the module docstring).

    ``n_sim`` is the Monte Carlo size of BTS's slot marginals; ``bts_dist`` computes them
    from (alpha, beta, len_list, n_sim=, seed=) and may be replaced, e.g. by a cached table.
    """
    if campaign not in CAMPAIGNS:
        raise ConfigError(f"unknown campaign {campaign!r}; choose one of {', '.join(CAMPAIGNS)}.")
    rnd = load_open_bandit("random", campaign, data_dir)
    bts = load_open_bandit("bts", campaign, data_dir)
    alpha, beta = load_bts_prior(campaign, data_dir)
    if alpha.size != bts.n_actions or rnd.n_actions != bts.n_actions:
        raise DataError(
            f"campaign {campaign!r}: the prior has {alpha.size} items but the logs have "
            f"{rnd.n_actions} and {bts.n_actions}; the sample is inconsistent."
        )
    pi_bts = bts_dist(alpha, beta, LEN_LIST, n_sim=n_sim, seed=seed)
    pi_random = uniform_action_dist(rnd.n_actions, LEN_LIST)
    opts: dict[str, Any] = {
        "n_boot": n_boot,
        "level": level,
        "n_folds": n_folds,
        "prior_strength": prior_strength,
        "tau": tau,
        "seed": seed,
    }
    return OBDValidation(
        campaign=campaign,
        random_from_bts=validate_direction(bts, rnd, pi_random, **opts),
        bts_from_random=validate_direction(rnd, bts, pi_bts, **opts),
        settings={"n_sim": n_sim, **opts},
    )


__all__ = [
    "LEN_LIST",
    "DirectionValidation",
    "EstimatorCheck",
    "OBDValidation",
    "OnPolicyValue",
    "on_policy_value",
    "validate",
    "validate_direction",
]
