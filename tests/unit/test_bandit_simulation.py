"""A simulated Thompson-sampling experiment with known click-through rates.

1000 independent runs (vectorised: one row per run) of three arms with CTR 0.05, 0.06, 0.08.
Units arrive in batches of 150; before each batch the weights are recomputed from the running
per-arm totals with `thompson_weights`, each unit's arm is drawn from those weights and the
arm's weight is logged as its assignment probability. One unit = one exposure, reward = click.
"""

from __future__ import annotations

import numpy as np
import pytest

from abrec.bandit import BanditSettings, arm_estimates, thompson_weights

CTR = np.array([0.05, 0.06, 0.08])
RUNS, BATCH, BATCHES = 1000, 150, 20
ARMS = [0, 1, 2]


def simulate(seed: int) -> dict[str, np.ndarray]:
    settings = BanditSettings(min_share=0.05, burn_in=100, draws=1000)
    rng = np.random.default_rng(seed)
    k = CTR.size
    clicks = np.zeros((RUNS, k), dtype=np.int64)
    exposures = np.zeros((RUNS, k), dtype=np.int64)
    arms, rewards, probs = [], [], []
    for _ in range(BATCHES):
        w = thompson_weights(clicks, exposures, exposures, settings, rng)
        cum = np.cumsum(w, axis=1)
        a = np.minimum((rng.random((RUNS, BATCH))[..., None] >= cum[:, None, :]).sum(-1), k - 1)
        y = rng.random((RUNS, BATCH)) < CTR[a]
        for j in range(k):
            exposures[:, j] += (a == j).sum(axis=1)
            clicks[:, j] += ((a == j) & y).sum(axis=1)
        arms.append(a)
        rewards.append(y.astype(np.float64))
        probs.append(np.take_along_axis(w, a, axis=1))
    final = thompson_weights(clicks, exposures, exposures, settings, rng)
    return {
        "arm": np.concatenate(arms, axis=1),
        "reward": np.concatenate(rewards, axis=1),
        "prob": np.concatenate(probs, axis=1),
        "exposures": exposures,
        "final": final,
    }


@pytest.fixture(scope="module")
def sim() -> dict[str, np.ndarray]:
    return simulate(seed=2024)


def _bias_and_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over runs minus the true CTR, and the Monte Carlo SE of that mean."""
    return values.mean(axis=0) - CTR, values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])


def test_most_traffic_goes_to_the_best_arm(sim: dict[str, np.ndarray]) -> None:
    share = sim["exposures"] / sim["exposures"].sum(axis=1, keepdims=True)
    assert share[:, 2].mean() > 0.6  # measured 0.67 (equal split would be 0.33)
    assert (share.argmax(axis=1) == 2).mean() > 0.9
    assert sim["final"][:, 2].mean() > 0.75  # measured 0.82
    assert sim["final"].min() >= 0.05 and sim["prob"].min() >= 0.05


def test_naive_means_of_worse_arms_are_biased_low(sim: dict[str, np.ndarray]) -> None:
    naive = arm_estimates(sim["arm"], sim["reward"], sim["prob"], ARMS)["naive"]
    bias, se = _bias_and_se(naive)
    # measured: -0.0023 (7.0 SE) and -0.0041 (12.5 SE) for the 0.05 and 0.06 arms
    assert bias[0] < -3 * se[0] and bias[1] < -3 * se[1], (bias, se)


def test_ips_is_unbiased_with_logged_probabilities(sim: dict[str, np.ndarray]) -> None:
    est = arm_estimates(sim["arm"], sim["reward"], sim["prob"], ARMS)
    bias, se = _bias_and_se(est["ips"])
    assert np.all(np.abs(bias) < 4 * se), (bias, se)  # measured within 2.0 SE
    assert np.all(se < 0.0006)  # precise enough to see the naive bias above
    h_bias, h_se = _bias_and_se(est["hajek"])
    assert np.all(np.abs(h_bias) < 4 * h_se), (h_bias, h_se)


def test_ips_with_the_final_weights_is_biased(sim: dict[str, np.ndarray]) -> None:
    """The mutation the logged probabilities guard against: weighting by today's weights."""
    wrong = np.take_along_axis(sim["final"], sim["arm"], axis=1)
    bias, se = _bias_and_se(arm_estimates(sim["arm"], sim["reward"], wrong, ARMS)["ips"])
    assert np.abs(bias / se).max() > 10, (bias, se)  # measured +0.062 on the worst arm (33 SE)
