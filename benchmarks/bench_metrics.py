"""Ranking metrics: abrec's vectorised implementation vs a straightforward pandas one.

Both compute precision, recall, NDCG, MAP, MRR and hit rate at several k on the same
top-k lists; values are checked to be identical (np.allclose) and timings printed as
``name: ours X s, baseline Y s, ratio R`` (R = baseline / ours).

Cases: (a) MovieLens latest-small, all 610 users, top-100 popularity lists on protocol
ml-small-temporal-v1 (when ABREC_DATA is set); (b) synthetic 100,000 users x top-100
over 10,000 items.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from abrec.evaluation.metrics import RANKING_METRICS, ranking_metrics

KS = (5, 10, 20, 100)


def pandas_metrics(
    topk: np.ndarray, relevant: sp.csr_matrix, ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """What a typical user writes: long frames, a merge, groupby per k."""
    n_users, big_k = topk.shape
    recs = pd.DataFrame(
        {
            "user": np.repeat(np.arange(n_users), big_k),
            "item": topk.ravel(),
            "rank": np.tile(np.arange(1, big_k + 1), n_users),
        }
    )
    coo = relevant.tocoo()
    rel = pd.DataFrame({"user": coo.row, "item": coo.col, "rel": 1.0})
    n_rel = rel.groupby("user").size()
    df = recs.merge(rel, on=["user", "item"], how="left")
    df["rel"] = df["rel"].fillna(0.0)
    df = df.sort_values(["user", "rank"])
    df["dcg"] = df["rel"] / np.log2(df["rank"] + 1)
    df["cum_hits"] = df.groupby("user")["rel"].cumsum()
    df["prec_at_hit"] = df["rel"] * df["cum_hits"] / df["rank"]
    users = pd.Index(np.arange(n_users), name="user")
    out: dict[str, np.ndarray] = {}
    for k in ks:
        d = df[df["rank"] <= k]
        g = d.groupby("user")
        hits = g["rel"].sum().reindex(users)
        nr = n_rel.reindex(users)
        cap = nr.clip(upper=k)
        idcg = cap.apply(
            lambda r: sum(1.0 / math.log2(i + 2) for i in range(int(r))) if r == r else np.nan
        )
        first = d[d["rel"] > 0].groupby("user")["rank"].min().reindex(users)
        valid = nr.notna()
        out[f"precision@{k}"] = (hits / k).where(valid).to_numpy()
        out[f"recall@{k}"] = (hits / nr).to_numpy()
        out[f"ndcg@{k}"] = (g["dcg"].sum().reindex(users) / idcg).to_numpy()
        out[f"map@{k}"] = (g["prec_at_hit"].sum().reindex(users) / cap).to_numpy()
        out[f"mrr@{k}"] = (1.0 / first).fillna(0.0).where(valid).to_numpy()
        out[f"hit_rate@{k}"] = (hits > 0).astype(float).where(valid).to_numpy()
    return out


def run_case(name: str, topk: np.ndarray, relevant: sp.csr_matrix) -> None:
    """Time both implementations on the same lists and check the values agree."""
    t0 = time.perf_counter()
    ours = ranking_metrics(topk, relevant, KS)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = pandas_metrics(topk, relevant, KS)
    t_base = time.perf_counter() - t0
    for k in KS:
        for metric in RANKING_METRICS:
            key = f"{metric}@{k}"
            if not np.allclose(ours[key], base[key], rtol=1e-9, atol=1e-12, equal_nan=True):
                raise AssertionError(f"{name}: {key} differs between abrec and pandas")
    n_metrics = len(KS) * len(RANKING_METRICS)
    print(
        f"{name} ({topk.shape[0]} users x top-{topk.shape[1]}, {n_metrics} metric columns "
        f"identical): ours {t_ours:.3f} s, baseline {t_base:.3f} s, ratio {t_base / t_ours:.1f}"
    )


def movielens_case() -> tuple[np.ndarray, sp.csr_matrix] | None:
    """Top-100 popularity lists (training items excluded) for all 610 users."""
    if not os.environ.get("ABREC_DATA"):
        return None
    from abrec.data.movielens import movielens_dataset
    from abrec.data.splits import ml_small_temporal_v1
    from abrec.models.base import top_k

    inter, _ = movielens_dataset()
    split = ml_small_temporal_v1(inter)
    train = split.train.matrix
    pop = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)
    scores = np.tile(pop, (train.shape[0], 1))
    coo = train.tocoo()
    scores[coo.row, coo.col] = -np.inf
    topk, _ = top_k(scores, 100)
    return topk, sp.csr_matrix(split.relevant)


def synthetic_case(
    n_users: int = 100_000, n_items: int = 10_000, k: int = 100, seed: int = 0
) -> tuple[np.ndarray, sp.csr_matrix]:
    """Distinct-item top-k lists (affine maps mod n_items) and skewed relevance sets."""
    rng = np.random.default_rng(seed)
    units = np.array([a for a in range(1, 400) if math.gcd(a, n_items) == 1])
    a = rng.choice(units, size=n_users)[:, None]
    b = rng.integers(0, n_items, size=n_users)[:, None]
    topk = (a * np.arange(k)[None, :] + b) % n_items
    n_rel = rng.integers(1, 25, size=n_users)
    rows = np.repeat(np.arange(n_users), n_rel)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    cols = rng.choice(n_items, size=len(rows), p=pop / pop.sum())
    # plant some relevant items inside each list so hits are common
    planted = rng.integers(0, 4, size=n_users)
    prow = np.repeat(np.arange(n_users), planted)
    pcol = topk[prow, rng.integers(0, k, size=len(prow))]
    rel = sp.csr_matrix(
        (
            np.ones(len(rows) + len(prow)),
            (np.concatenate([rows, prow]), np.concatenate([cols, pcol])),
        ),
        shape=(n_users, n_items),
    )
    rel.sum_duplicates()
    rel.data[:] = 1.0
    return topk.astype(np.int64), rel


def main() -> int:
    ml = movielens_case()
    if ml is None:
        print("movielens-610: skipped (set ABREC_DATA to the folder holding ml-latest-small)")
    else:
        run_case("movielens-610", *ml)
    run_case("synthetic-100k", *synthetic_case())
    return 0


if __name__ == "__main__":
    sys.exit(main())
