"""evaluate_models on a synthetic split: per-user values, cold slice, CIs, comparisons."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from statsmodels.stats.multitest import multipletests

from abrec.data.splits import protocol_split
from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.evaluation import metrics as M
from abrec.evaluation.protocol import evaluate_models, mean_cis
from abrec.models.base import Recommender


class RandomScores(Recommender):
    """Seeded random scores (fixed per user/item)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        rng = np.random.default_rng(self.seed)
        self._table = rng.random((train.n_users, train.n_items)).astype(np.float32)

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        return self._table[users]

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}


class Oracle(Recommender):
    """Knows the relevant test items (upper bound) plus noise."""

    name = "oracle"

    def __init__(self, relevant: sp.csr_matrix) -> None:
        super().__init__()
        self.relevant = relevant

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        pass

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.relevant[users].toarray(), dtype=np.float32) + 0.01 * (
            np.arange(self.relevant.shape[1], dtype=np.float32)[None, :] / self.relevant.shape[1]
        )


@pytest.fixture(scope="module")
def setup() -> tuple[Any, ItemCatalog]:
    rng = np.random.default_rng(0)
    n_users, n_items, n = 120, 80, 3000
    u = rng.integers(0, n_users, n)
    i = (rng.zipf(1.5, n) - 1) % (n_items - 10)  # the last 10 items never occur here
    keys = np.unique(u * n_items + i)
    u, i = keys // n_items, keys % n_items
    test_rows = rng.random(len(u)) < 0.25
    # put some cold items (70..79) into test only
    extra_u = rng.integers(0, n_users, 60)
    extra_i = rng.integers(70, 80, 60)
    ek = np.unique(extra_u * n_items + extra_i)
    extra_u, extra_i = ek // n_items, ek % n_items
    uid = np.arange(n_users) + 1000
    iid = np.arange(n_items)
    train = Interactions(u[~test_rows], i[~test_rows], uid, iid)
    tu = np.concatenate([u[test_rows], extra_u])
    ti = np.concatenate([i[test_rows], extra_i])
    ratings = rng.choice([2.0, 4.0, 5.0], size=len(tu))
    test = Interactions(tu, ti, uid, iid, ratings=ratings)
    split = protocol_split(train, test)
    items = ItemCatalog(iid, np.array([f"item {j}" for j in iid]))
    return split, items


def test_per_user_metrics_match_recommend_and_direct_metrics(setup: Any) -> None:
    split, items = setup
    rnd = RandomScores(1).fit(split.train, items)
    orc = Oracle(split.relevant).fit(split.train, items)
    emb = np.random.default_rng(2).normal(size=(split.n_items, 6))
    res = evaluate_models(
        {"random": rnd, "oracle": orc},
        split,
        ks=(5, 10),
        item_embeddings=emb,
        n_bootstrap=300,
        n_permutations=500,
        batch_size=17,
    )
    users = split.scored_users
    topk, _ = rnd.recommend(users, 10, exclude_seen=True)
    direct = M.ranking_metrics(topk, split.relevant[users], [5, 10])
    pu = res.per_user
    mine = pu[(pu["slice"] == "all") & (pu["model"] == "random")]
    np.testing.assert_array_equal(mine["user_idx"].to_numpy(), users)
    np.testing.assert_array_equal(mine["user_id"].to_numpy(), split.train.user_ids[users])
    for key, val in direct.items():
        np.testing.assert_allclose(mine[key].to_numpy(), val)
    np.testing.assert_allclose(
        mine["diversity@10"].to_numpy(), M.intra_list_diversity(topk, emb, 10)
    )
    counts = np.asarray(split.train.matrix.sum(axis=0)).ravel()
    n_train_users = int((np.diff(split.train.matrix.indptr) > 0).sum())
    np.testing.assert_allclose(
        mine["novelty@5"].to_numpy(), M.novelty_at_k(topk, counts, n_train_users, 5)
    )
    scores = rnd.score(users)
    np.testing.assert_allclose(
        mine["auc"].to_numpy(),
        M.auc_scores(scores, split.relevant[users], split.train.matrix[users]),
        rtol=1e-6,
    )
    assert res.value("random", "coverage@10") == pytest.approx(M.catalog_coverage(topk, 80, 10))
    # the oracle ranks all relevant first: NDCG@10 = 1 whenever |rel| <= 10
    orc_rows = pu[(pu["slice"] == "all") & (pu["model"] == "oracle")]
    assert np.allclose(orc_rows["ndcg@10"], 1.0)
    assert np.allclose(orc_rows["auc"], 1.0)


def test_cold_slice_counts_only_cold_relevant_items(setup: Any) -> None:
    split, items = setup
    rnd = RandomScores(3).fit(split.train, items)
    res = evaluate_models({"random": rnd}, split, ks=(10,), n_bootstrap=200, n_permutations=200)
    cold_rel = split.cold_relevant()
    cold_users = np.flatnonzero(np.diff(cold_rel.indptr) > 0)
    assert 0 < len(cold_users) < len(split.scored_users)
    cold = res.per_user[res.per_user["slice"] == "cold"]
    np.testing.assert_array_equal(cold["user_idx"].to_numpy(), cold_users)
    topk, _ = rnd.recommend(cold_users, 10)
    np.testing.assert_allclose(
        cold["recall@10"].to_numpy(), M.recall_at_k(topk, cold_rel[cold_users], 10)
    )
    assert res.info["n_cold_scored_users"] == len(cold_users)
    assert cold["novelty@10"].isna().all()


def test_summary_ci_and_comparisons(setup: Any) -> None:
    split, items = setup
    models = {
        "random": RandomScores(1).fit(split.train, items),
        "random2": RandomScores(2).fit(split.train, items),
        "oracle": Oracle(split.relevant).fit(split.train, items),
    }
    res = evaluate_models(
        models, split, ks=(10,), baseline="random", n_bootstrap=400, n_permutations=400, seed=4
    )
    s = res.summary
    row = s[(s.model == "oracle") & (s.metric == "ndcg@10") & (s.slice == "all")].iloc[0]
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    c = res.comparisons
    assert set(c["model"]) == {"random2", "oracle"}
    orc = c[(c.model == "oracle") & (c.metric == "ndcg@10") & (c.slice == "all")].iloc[0]
    assert orc["p_ttest"] < 1e-6 and orc["p_permutation"] <= 2 / 401 and orc["lift"] > 1
    # the difference's CI is the paired bootstrap of per-user differences, same seed
    pu = res.per_user[res.per_user.slice == "all"]
    per = {m: pu[pu.model == m].set_index("user_idx")["ndcg@10"] for m in ("oracle", "random")}
    paired = (per["oracle"] - per["random"].loc[per["oracle"].index]).to_numpy()
    ref = mean_cis(paired, n_boot=400, level=0.95, seed=4)
    assert (orc["diff_low"], orc["diff_high"]) == pytest.approx((ref.low[0], ref.high[0]))
    assert 0 < orc["diff_low"] <= orc["diff"] <= orc["diff_high"]
    for sl, metric in [("all", "ndcg@10"), ("all", "auc"), ("cold", "recall@10")]:
        grp = c[(c.slice == sl) & (c.metric == metric)]
        assert len(grp) == 2
        for t in ("ttest", "wilcoxon", "permutation"):
            np.testing.assert_allclose(
                grp[f"p_{t}_holm"], multipletests(grp[f"p_{t}"], method="holm")[1]
            )
    # deterministic with the same seed, and the JSON summary is valid JSON
    res2 = evaluate_models(
        models, split, ks=(10,), baseline="random", n_bootstrap=400, n_permutations=400, seed=4
    )
    np.testing.assert_array_equal(res.summary["ci_low"], res2.summary["ci_low"])
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["models"]["oracle"]["all"]["ndcg@10"]["mean"] == pytest.approx(1.0)
    assert d["baseline"] == "random"


def test_bad_baseline(setup: Any) -> None:
    split, items = setup
    with pytest.raises(ConfigError, match="baseline"):
        evaluate_models({"a": RandomScores().fit(split.train, items)}, split, baseline="zzz")


def test_compare_against_another_baseline(setup: Any) -> None:
    split, items = setup
    models = {
        "random": RandomScores(1).fit(split.train, items),
        "oracle": Oracle(split.relevant).fit(split.train, items),
    }
    res = evaluate_models(models, split, ks=(10,), n_bootstrap=200, n_permutations=300, seed=1)
    swapped = res.compare("oracle")
    row = swapped[(swapped.metric == "ndcg@10") & (swapped.slice == "all")].iloc[0]
    orig = res.comparisons[
        (res.comparisons.metric == "ndcg@10") & (res.comparisons.slice == "all")
    ].iloc[0]
    assert row["model"] == "random" and row["baseline"] == "oracle"
    assert row["diff"] == pytest.approx(-orig["diff"])
    assert row["p_ttest"] == pytest.approx(orig["p_ttest"])
    with pytest.raises(ConfigError):
        res.compare("nobody")
