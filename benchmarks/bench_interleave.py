"""Users needed for 80% power: team-draft interleaving vs an A/B test, on real MovieLens models.

Models are fitted on the training period of protocol ml-small-temporal-v1; simulated users
(`abrec.simulate.Population.from_split`) click by the position-based `ClickModel` driven by
their held-out ratings, one impression of 10 items per user:

* A/B: each user sees one model's own top-10; metric clicks per user; Welch t-test.
* interleaving: each user sees the team-draft merge of the two top-10s (every coin-flip
  outcome enumerated with its probability by `abrec.interleave.enumerate_outcomes`); the
  user's outcome is the sign of (clicks on B's team - clicks on A's team); sign test.

Power at n is simulated with `--runs` experiments of n users drawn with replacement. Each
simulated user's click count (A/B) or outcome (interleaving) is an independent draw from
the population mixture, whose exact law is computed once (a convolution over the 10
positions per user and coin-flip outcome), so an experiment of n users is one multinomial
draw over that law: the same process as resampling users and drawing clicks, at any n. A
brute-force check (user resampling, Bernoulli clicks, the library's `credit`) confirms the
interleaving power at its n. The smallest n with power >= 0.8 is found by bisection with
common random numbers. `abrec.stats.power.sample_size_means` gives the analytic A/B n.

    python benchmarks/bench_interleave.py --out interleave.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

K = 10
TARGET_POWER, ALPHA = 0.8, 0.05


def fit_models(kinds: list[str], seed: int) -> tuple[Any, dict[str, Any]]:
    from abrec.data.movielens import movielens_dataset
    from abrec.data.splits import ml_small_temporal_v1
    from abrec.models.registry import build_model

    inter, items = movielens_dataset()
    split = ml_small_temporal_v1(inter)
    params: dict[str, dict[str, Any]] = {
        "ease": {"lambda_": 500.0},
        "itemknn": {"k": 100},
        "als": {"factors": 64, "iterations": 15, "seed": seed},
    }
    models = {k: build_model(k, **params.get(k, {})).fit(split.train, items) for k in kinds}
    return split, models


def user_lists(split: Any, models: dict[str, Any]) -> tuple[list[Any], dict[str, list[list[str]]]]:
    """Simulated users and every model's top-10 (item ids, seen items excluded) per user."""
    from abrec.simulate.population import Population

    pop = Population.from_split(split.train, split.test, covariate="none", k=K)
    index = {str(u): i for i, u in enumerate(split.test.user_ids)}
    users = np.array([index[u.unit_id] for u in pop.users])
    item_ids = np.asarray([str(i) for i in split.test.item_ids])
    tops = {n: [list(item_ids[row]) for row in m.recommend(users, K)[0]] for n, m in models.items()}
    return list(pop.users), tops


def _convolve(q: np.ndarray, step: np.ndarray, width: int) -> np.ndarray:
    """Law of sum_p step_p * Bernoulli(q_p) (steps in {-1, 0, 1}) over the last axis of q."""
    dist = np.zeros((*q.shape[:-1], 2 * width + 1))
    dist[..., width] = 1.0
    for p in range(q.shape[-1]):
        moved = np.zeros_like(dist)
        s = step[..., p]
        for d in (-1, 0, 1):
            rolled = np.roll(dist, d, axis=-1)
            moved += np.where((s == d)[..., None], rolled, 0.0)
        qp = q[..., p, None]
        dist = dist * (1.0 - qp) + moved * qp
    return dist


def ab_law(users: list[Any], top: list[list[str]], cm: Any) -> np.ndarray:
    """P(clicks per user = c), c = 0..K, mixed over users (own top-K shown)."""
    q = np.stack(
        [
            cm.click_probability(np.arange(K), u.ratings_for(t))
            for u, t in zip(users, top, strict=True)
        ]
    )
    dist = _convolve(q, np.ones_like(q, dtype=np.int64), K)
    return np.asarray(dist.mean(axis=0)[K:])


def interleave_law(
    users: list[Any], top_a: list[list[str]], top_b: list[list[str]], cm: Any
) -> tuple[np.ndarray, list[Any]]:
    """(P(B wins), P(A wins), P(tie)) per simulated user, and each user's outcome table."""
    from abrec.interleave import enumerate_outcomes

    laws, tables = [], []
    for u, a, b in zip(users, top_a, top_b, strict=True):
        outs = enumerate_outcomes("team_draft", {"A": a, "B": b}, K)
        assert outs is not None
        probs = np.array([o.probability for o in outs])
        q = np.stack(
            [cm.click_probability(np.arange(K), u.ratings_for(list(o.items))) for o in outs]
        )
        step = np.array([[1 if s == "B" else -1 for s in o.sources] for o in outs])
        dist = _convolve(q, step, K) * probs[:, None]
        tot = dist.sum(axis=0)
        laws.append([tot[K + 1 :].sum(), tot[:K].sum(), tot[K]])
        tables.append((probs, q, step, outs))
    return np.array(laws), tables


def power_ab(law_a: np.ndarray, law_b: np.ndarray, n: int, runs: int, seed: int) -> float:
    """Welch t-test power with n users per arm (exact multinomial resampling of click counts)."""
    rng = np.random.default_rng(seed)
    c = np.arange(K + 1)
    ca = rng.multinomial(n, law_a, size=runs)
    cb = rng.multinomial(n, law_b, size=runs)
    ma, mb = ca @ c / n, cb @ c / n
    va = (ca @ c**2 - n * ma**2) / (n - 1)
    vb = (cb @ c**2 - n * mb**2) / (n - 1)
    se2 = va / n + vb / n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mb - ma) / np.sqrt(se2)
        df = se2**2 / ((va / n) ** 2 / (n - 1) + (vb / n) ** 2 / (n - 1))
    p = 2 * stats.t.sf(np.abs(t), df)
    return float(np.mean(np.nan_to_num(p, nan=1.0) < ALPHA))


def power_interleave(law: np.ndarray, n: int, runs: int, seed: int) -> float:
    """Sign-test power with n users (exact multinomial resampling of per-user outcomes)."""
    from abrec.interleave import sign_test_pvalues

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, law.mean(axis=0), size=runs)
    return float(np.mean(sign_test_pvalues(counts[:, 0], counts[:, 1]) < ALPHA))


def brute_force_interleave(
    users: list[Any], tables: list[Any], n: int, runs: int, seed: int
) -> float:
    """Power by plain simulation: resample users, draw a merge by its probability, Bernoulli
    clicks, the library's team-draft credit, the sign test."""
    from abrec.interleave import credit, sign_test_pvalues

    rng = np.random.default_rng(seed)
    wins, losses = np.zeros(runs, np.int64), np.zeros(runs, np.int64)
    for r in range(runs):
        for i in rng.integers(0, len(users), size=n):
            probs, q, _step, outs = tables[i]
            o = int(rng.choice(len(probs), p=probs))
            clicked = rng.random(K) < q[o]
            c = credit("team_draft", ["A", "B"], outs[o].sources, clicked)
            wins[r] += c["B"] > c["A"]
            losses[r] += c["B"] < c["A"]
    return float(np.mean(sign_test_pvalues(wins, losses) < ALPHA))


def smallest_n(power: Callable[[int], float], lo: int = 10) -> tuple[int, float]:
    """Smallest n with power >= 0.8 (doubling then bisection to 1%)."""
    hi = lo
    while power(hi) < TARGET_POWER:
        lo, hi = hi, hi * 2
        if hi > 10**9:
            raise RuntimeError("more than 10^9 users needed")
    while hi - lo > max(1, hi // 100):
        mid = (lo + hi) // 2
        if power(mid) >= TARGET_POWER:
            hi = mid
        else:
            lo = mid
    return hi, power(hi)


def compare(
    users: list[Any], tops: dict[str, list[list[str]]], a: str, b: str, args: Any
) -> dict[str, Any]:
    from abrec.simulate.click_model import ClickModel
    from abrec.stats.power import sample_size_means

    cm = ClickModel()
    la, lb = ab_law(users, tops[a], cm), ab_law(users, tops[b], cm)
    c = np.arange(K + 1)
    mean = {a: float(la @ c), b: float(lb @ c)}
    sd = {
        a: math.sqrt(float(la @ c**2) - mean[a] ** 2),
        b: math.sqrt(float(lb @ c**2) - mean[b] ** 2),
    }
    law, tables = interleave_law(users, tops[a], tops[b], cm)
    n_ab, pw_ab = smallest_n(lambda n: power_ab(la, lb, n, args.runs, args.seed))
    n_il, pw_il = smallest_n(lambda n: power_interleave(law, n, args.runs, args.seed))
    brute_runs = min(args.brute_runs, max(50, args.brute_draws // n_il))  # bounded time
    brute = brute_force_interleave(users, tables, n_il, brute_runs, args.seed + 1)
    analytic = sample_size_means(
        mean[b] - mean[a], sd[a], std_treatment=sd[b], alpha=ALPHA, power=TARGET_POWER
    )
    pw, pl, pt = law.mean(axis=0)
    return {
        "control": a,
        "treatment": b,
        "clicks_per_user": mean,
        "clicks_sd": sd,
        "p_win": float(pw),
        "p_loss": float(pl),
        "p_tie": float(pt),
        "ab_users_per_arm": n_ab,
        "ab_users_total": 2 * n_ab,
        "ab_power_at_n": pw_ab,
        "ab_analytic_per_arm": analytic.n_control,
        "interleaving_users": n_il,
        "interleaving_power_at_n": pw_il,
        "interleaving_brute_force_power_at_n": brute,
        "brute_force_runs": brute_runs,
        "ratio_total_users": 2 * n_ab / n_il,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pairs", default="popularity:ease,ease:itemknn", help="control:treatment,..."
    )
    parser.add_argument("--runs", type=int, default=2000, help="simulated experiments per n")
    parser.add_argument(
        "--brute-runs", type=int, default=300, help="plain-simulation runs for the check"
    )
    parser.add_argument(
        "--brute-draws", type=int, default=2_000_000, help="cap on users drawn by the check"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    kinds = sorted({m for p in pairs for m in p})
    t0 = time.perf_counter()
    split, models = fit_models(kinds, args.seed)
    users, tops = user_lists(split, models)
    fit_s = time.perf_counter() - t0
    rows = [compare(users, tops, a, b, args) for a, b in pairs]
    print(f"{len(users)} simulated users; models fitted in {fit_s:.1f} s; {args.runs} runs per n\n")
    print(
        "| control | treatment | clicks/user A, B | A/B users (total) | analytic A/B total | interleaving users | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ma, mb = r["clicks_per_user"][r["control"]], r["clicks_per_user"][r["treatment"]]
        print(
            f"| {r['control']} | {r['treatment']} | {ma:.3f}, {mb:.3f} | {r['ab_users_total']:,} | "
            f"{2 * r['ab_analytic_per_arm']:,} | {r['interleaving_users']:,} | {r['ratio_total_users']:.1f}x |"
        )
    for r in rows:
        print(
            f"\n{r['control']} vs {r['treatment']}: P(win, loss, tie) = "
            f"{r['p_win']:.3f}, {r['p_loss']:.3f}, {r['p_tie']:.3f}; interleaving power at n: "
            f"{r['interleaving_power_at_n']:.3f} (brute force {r['interleaving_brute_force_power_at_n']:.3f})"
        )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(
                {"runs": args.runs, "seed": args.seed, "n_users": len(users), "pairs": rows},
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
