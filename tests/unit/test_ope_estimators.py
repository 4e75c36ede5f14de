"""OPE estimators against an exactly known policy value on a synthetic contextual bandit."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from typing import Any

import numpy as np
import pytest

from abrec.errors import DataError
from abrec.ope import ESTIMATORS, OPEResult, dm, dr, estimate_all, ips, snips, switch_dr

N_CONTEXTS, N_ACTIONS, N_ROUNDS = 20, 5, 200_000


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Bandit:
    """Known reward table mu(x, a), context law P(x), logging pi_0 and evaluation pi_e."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.mu = rng.uniform(0.05, 0.95, size=(N_CONTEXTS, N_ACTIONS))
        self.p_x = rng.dirichlet(np.ones(N_CONTEXTS))
        self.pi_0 = _softmax(rng.normal(size=(N_CONTEXTS, N_ACTIONS)))
        self.pi_e = _softmax(4.0 * self.mu)  # prefers good actions, unlike pi_0

    def true_value(self) -> float:
        """V = sum_x P(x) sum_a pi_e(a|x) mu(x, a), exactly (no sampling)."""
        return float(self.p_x @ (self.pi_e * self.mu).sum(axis=1))

    def log(self, n: int, seed: int) -> dict[str, np.ndarray]:
        """n rounds logged under pi_0: x ~ P, a ~ pi_0(.|x), r ~ Bernoulli(mu(x, a))."""
        rng = np.random.default_rng(seed)
        x = rng.choice(N_CONTEXTS, size=n, p=self.p_x)
        cum = self.pi_0[x].cumsum(axis=1)
        a = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), N_ACTIONS - 1)
        r = (rng.random(n) < self.mu[x, a]).astype(np.float64)
        return {"x": x, "a": a, "rewards": r, "pscore": self.pi_0[x, a], "w": self.pi_e[x, a]}

    def q_inputs(self, q: np.ndarray, logged: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """q_hat_logged = q(x_i, a_i) and q_hat_e = sum_a pi_e(a|x_i) q(x_i, a)."""
        x, a = logged["x"], logged["a"]
        return {"q_hat_logged": q[x, a], "q_hat_e": (self.pi_e * q).sum(axis=1)[x]}


@pytest.fixture(scope="module")
def bandit() -> Bandit:
    return Bandit()


@pytest.fixture(scope="module")
def logged(bandit: Bandit) -> dict[str, np.ndarray]:
    return bandit.log(N_ROUNDS, seed=11)


def _wrong_q(bandit: Bandit) -> np.ndarray:
    """A badly misspecified reward model: flattened towards 0.5 and shifted up."""
    return 0.3 * bandit.mu + 0.5


def _se(terms: np.ndarray) -> float:
    return float(terms.std(ddof=1) / math.sqrt(terms.size))


def test_true_value_differs_from_logging_value(bandit: Bandit) -> None:
    """The test is meaningful: pi_e's value is far from pi_0's (naive mean of rewards)."""
    v0 = float(bandit.p_x @ (bandit.pi_0 * bandit.mu).sum(axis=1))
    assert abs(bandit.true_value() - v0) > 0.1


def test_ips_snips_unbiased(bandit: Bandit, logged: dict[str, np.ndarray]) -> None:
    v = bandit.true_value()
    r, p, w = logged["rewards"], logged["pscore"], logged["w"]
    iw = w / p
    res_ips = ips(r, p, w, n_boot=200, seed=1)
    res_snips = snips(r, p, w, n_boot=200, seed=1)
    se_ips = _se(iw * r)
    se_snips = _se(iw * (r - res_snips.value)) / float(iw.mean())  # delta method
    assert abs(res_ips.value - v) < 4 * se_ips
    assert abs(res_snips.value - v) < 4 * se_snips
    assert res_ips.n == N_ROUNDS
    # V is inside the IPS CI, and the bootstrap CI matches the normal-theory width.
    assert res_ips.ci_low < v < res_ips.ci_high
    half = (res_ips.ci_high - res_ips.ci_low) / 2
    assert half == pytest.approx(1.959964 * se_ips, rel=0.15)
    half_sn = (res_snips.ci_high - res_snips.ci_low) / 2
    assert half_sn == pytest.approx(1.959964 * se_snips, rel=0.15)


def test_dm_true_q_unbiased_wrong_q_biased(bandit: Bandit, logged: dict[str, np.ndarray]) -> None:
    v = bandit.true_value()
    true_q = bandit.q_inputs(bandit.mu, logged)["q_hat_e"]
    res = dm(true_q, n_boot=200, seed=2)
    assert abs(res.value - v) < 4 * _se(true_q)
    wrong = bandit.q_inputs(_wrong_q(bandit), logged)["q_hat_e"]
    res_wrong = dm(wrong, n_boot=200, seed=2)
    assert abs(res_wrong.value - v) > 50 * _se(wrong)
    assert not res_wrong.ci_low < v < res_wrong.ci_high


def test_dr_and_switch_dr_with_wrong_q(bandit: Bandit, logged: dict[str, np.ndarray]) -> None:
    """DR is unbiased with a wrong model (propensities are right); DM with it is not."""
    v = bandit.true_value()
    r, p, w = logged["rewards"], logged["pscore"], logged["w"]
    q = bandit.q_inputs(_wrong_q(bandit), logged)
    res = dr(r, p, w, q["q_hat_logged"], q["q_hat_e"], n_boot=200, seed=3)
    terms = q["q_hat_e"] + w / p * (r - q["q_hat_logged"])
    assert abs(res.value - v) < 4 * _se(terms)
    assert res.ci_low < v < res.ci_high
    # Switch-DR with the true model is unbiased for any tau.
    qt = bandit.q_inputs(bandit.mu, logged)
    tau = float(np.median(w / p))
    res_sw = switch_dr(r, p, w, qt["q_hat_logged"], qt["q_hat_e"], tau=tau, n_boot=200, seed=3)
    iw = w / p
    sw_terms = qt["q_hat_e"] + np.where(iw <= tau, iw * (r - qt["q_hat_logged"]), 0.0)
    assert abs(res_sw.value - v) < 4 * _se(sw_terms)


def test_estimate_all(bandit: Bandit, logged: dict[str, np.ndarray]) -> None:
    r, p, w = logged["rewards"], logged["pscore"], logged["w"]
    q = bandit.q_inputs(bandit.mu, logged)
    out = estimate_all(r[:5000], p[:5000], w[:5000], n_boot=50)
    assert list(out) == ["ips", "snips"]
    out = estimate_all(
        r[:5000], p[:5000], w[:5000], q["q_hat_logged"][:5000], q["q_hat_e"][:5000], n_boot=50
    )
    assert tuple(out) == ESTIMATORS
    assert out["switch_dr"] == OPEResult("switch_dr", *list(vars(out["dr"]).values())[1:])
    assert out["ips"] == ips(r[:5000], p[:5000], w[:5000], n_boot=50)
    for name, res in out.items():
        assert res.estimator == name
        assert res.ci_low <= res.value <= res.ci_high


def test_ci_coverage(bandit: Bandit) -> None:
    """Over many small independent logs, the 90% IPS CI covers V about 90% of the time."""
    v = bandit.true_value()
    hits = 0
    reps = 200
    for rep in range(reps):
        lg = bandit.log(1000, seed=1000 + rep)
        res = ips(lg["rewards"], lg["pscore"], lg["w"], n_boot=200, level=0.9, seed=rep)
        hits += res.ci_low < v < res.ci_high
    assert 0.83 <= hits / reps <= 0.96


# Exact small hand cases.
R = [1.0, 0.0, 1.0, 0.0]
P = [0.5, 0.5, 0.25, 1.0]
W = [1.0, 0.5, 0.5, 0.2]  # importance weights 2, 1, 2, 0.2
Q_LOG = [0.5, 0.5, 0.5, 0.5]
Q_E = [0.6, 0.4, 0.5, 0.3]


def test_hand_values() -> None:
    assert ips(R, P, W).value == pytest.approx((2 + 2) / 4)
    assert snips(R, P, W).value == pytest.approx(4 / 5.2)
    assert dm(Q_E).value == pytest.approx(1.8 / 4)
    # DR terms: 0.6 + 2*0.5, 0.4 + 1*(-0.5), 0.5 + 2*0.5, 0.3 + 0.2*(-0.5)
    assert dr(R, P, W, Q_LOG, Q_E).value == pytest.approx(3.2 / 4)
    # tau = 1 keeps the corrections of weights 1 and 0.2 (the boundary is inclusive).
    for tau in (1.0, 1.5):
        assert switch_dr(R, P, W, Q_LOG, Q_E, tau=tau).value == pytest.approx(1.2 / 4)


def test_ips_equals_snips_when_weights_average_one() -> None:
    w = [0.5, 0.5, 0.5, 0.0]  # weights 1, 1, 2, 0: mean 1
    assert ips(R, P, w).value == pytest.approx(0.75)
    assert snips(R, P, w).value == pytest.approx(ips(R, P, w).value)


def test_switch_dr_limits() -> None:
    rng = np.random.default_rng(5)
    n = 300
    r = rng.random(n)
    p = rng.uniform(0.05, 1.0, n)
    w = rng.uniform(0.0, 1.0, n)
    q_log, q_e = rng.random(n), rng.random(n)
    d = dr(r, p, w, q_log, q_e, n_boot=100)
    assert switch_dr(r, p, w, q_log, q_e, tau=math.inf, n_boot=100) == OPEResult(
        "switch_dr", d.value, d.ci_low, d.ci_high, d.n
    )
    m = dm(q_e, n_boot=100)
    s0 = switch_dr(r, p, w, q_log, q_e, tau=0.0, n_boot=100)
    assert (s0.value, s0.ci_low, s0.ci_high) == pytest.approx((m.value, m.ci_low, m.ci_high))


def test_rounds_resample_whole_rounds() -> None:
    """Duplicating every row as a second slot of its round changes neither value nor CI."""
    rng = np.random.default_rng(9)
    n = 400
    r = rng.random(n)
    p = rng.uniform(0.1, 1.0, n)
    w = rng.uniform(0.0, 1.0, n)
    base = snips(r, p, w, n_boot=300, seed=4)
    twice = snips(
        np.repeat(r, 2),
        np.repeat(p, 2),
        np.repeat(w, 2),
        rounds=np.repeat(np.arange(n), 2),
        n_boot=300,
        seed=4,
    )
    assert (twice.value, twice.ci_low, twice.ci_high) == pytest.approx(
        (base.value, base.ci_low, base.ci_high)
    )
    assert twice.n == 2 * n
    naive = snips(np.repeat(r, 2), np.repeat(p, 2), np.repeat(w, 2), n_boot=300, seed=4)
    assert naive.ci_high - naive.ci_low < 0.85 * (base.ci_high - base.ci_low)


def test_seeded_and_frozen() -> None:
    a = ips(R, P, W, n_boot=100, seed=3)
    assert a == ips(R, P, W, n_boot=100, seed=3)
    with pytest.raises(FrozenInstanceError):
        a.value = 0.0  # type: ignore[misc]


HAND_LOG: dict[str, Any] = {
    "rewards": R,
    "pscore": P,
    "action_dist_e": W,
    "q_hat_logged": Q_LOG,
    "q_hat_e": Q_E,
}
"""The hand-sized log every bad-input case starts from."""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": [1.0, 0.0]}, "same length"),
        ({"rewards": [1.0, math.nan, 0.0, 1.0]}, "rewards contains NaN"),
        ({"pscore": [0.5, 0.0, 0.25, 1.0]}, r"pscore must lie in \(0, 1\]"),
        ({"pscore": [0.5, 1.5, 0.25, 1.0]}, r"pscore must lie in \(0, 1\]"),
        ({"action_dist_e": [1.0, -0.1, 0.5, 0.2]}, r"action_dist_e must lie in \[0, 1\]"),
        ({"action_dist_e": [1.0, 1.1, 0.5, 0.2]}, r"action_dist_e must lie in \[0, 1\]"),
        ({"action_dist_e": [0.0, 0.0, 0.0, 0.0]}, "zero probability"),
        ({"q_hat_e": [0.1, 0.2]}, "same length"),
        ({"q_hat_logged": [0.1, math.inf, 0.1, 0.1]}, "q_hat_logged contains NaN or inf"),
        ({"rewards": [[1.0, 0.0]]}, "must be 1-D"),
        ({"rewards": []}, "empty"),
        ({"rounds": [0, 1]}, "rounds must be 1-D"),
    ],
)
def test_bad_data(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {**HAND_LOG, **kwargs}
    with pytest.raises(DataError, match=match):
        estimate_all(**args, n_boot=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boot": 0}, "n_boot"),
        ({"level": 1.0}, "level"),
        ({"tau": -1.0}, "tau"),
        ({"tau": math.nan}, "tau"),
        ({"q_hat_e": None}, "both q_hat_logged and q_hat_e"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {**HAND_LOG, **kwargs}
    with pytest.raises(ValueError, match=match):
        estimate_all(**args)
