"""The loop's two cheap screens: offline on a validation split, off-policy on logged lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from abrec.data.types import Interactions
from abrec.errors import DataError
from abrec.evaluation.protocol import EvaluationResult
from abrec.models.base import Recommender
from abrec.ope.estimators import OPEResult, ips
from abrec.stats.results import Interval, Num, ToDictMixin
from abrec.store import Impression


@dataclass(frozen=True)
class OfflineScreen(ToDictMixin):
    """A candidate on the validation split against the champion (paired over users)."""

    model: str
    metric: str
    mean: Num
    difference: Interval
    p_value: Num


@dataclass(frozen=True)
class OffPolicyScreen(ToDictMixin):
    """A model's click rate per shown slot estimated from logged lists (slot-wise IPS)."""

    model: str
    estimate: Interval
    support: int
    n_rows: int


def offline_screen(
    result: EvaluationResult, champion: str, candidates: Sequence[str], metric: str
) -> list[OfflineScreen]:
    """Each candidate's validation `metric` against the champion's (paired t-test, bootstrap CI)."""
    comp = result.compare(champion, list(candidates))
    rows = comp[(comp["slice"] == "all") & (comp["metric"] == metric)]
    if rows.empty:
        raise DataError(f"the offline evaluation has no metric {metric!r}; set loop.screen_metric")
    out = []
    for _, r in rows.iterrows():
        out.append(
            OfflineScreen(
                model=str(r["model"]),
                metric=metric,
                mean=float(r["mean_model"]),
                difference=Interval(float(r["diff"]), float(r["diff_low"]), float(r["diff_high"])),
                p_value=float(r["p_ttest"]),
            )
        )
    return out


def off_policy_screen(
    models: Mapping[str, Recommender],
    train: Interactions,
    impressions: Sequence[Impression],
    *,
    k: int,
    seed: int = 0,
) -> list[OffPolicyScreen]:
    """Slot-wise IPS of each model's top-k lists on logged impressions.

    Each logged exposure (unit u, item i, slot s, logging probability p, click r) is a row;
    a deterministic model shows i at s with probability 1[its list for u has i at s], so the
    estimate is mean(1[match] r / p) over rows, i.e. clicks per shown slot under the model
    (the position-based, "independent item" assumption of Li et al. 2018). The bootstrap
    resamples whole impressions. Units unknown to the model's training data are skipped.
    ``support`` counts the matched rows: with few, the estimate says little.
    """
    index = {str(u): j for j, u in enumerate(train.user_ids)}
    item_index = {str(i): j for j, i in enumerate(train.item_ids)}
    rows = [
        (index[imp.unit_id], imp_no, s, item_index.get(item, -1), p, c)
        for imp_no, imp in enumerate(impressions)
        if imp.unit_id in index
        for s, (item, p, c) in enumerate(zip(imp.items, imp.propensities, imp.clicked, strict=True))
        if p is not None
    ]
    if not rows:
        return []
    user, imp_id, slot, item, pscore, click = (np.asarray(col) for col in zip(*rows, strict=True))
    users = np.unique(user)
    out = []
    for name, model in models.items():
        top, _ = model.recommend(users, k)
        pos = np.searchsorted(users, user)
        within = slot < top.shape[1]
        match = np.zeros(len(user), dtype=bool)
        match[within] = top[pos[within], slot[within]] == item[within]
        est: OPEResult = ips(
            click.astype(np.float64), pscore.astype(np.float64), match.astype(np.float64),
            rounds=imp_id, n_boot=500, seed=seed,
        )  # fmt: skip
        out.append(
            OffPolicyScreen(
                model=name,
                estimate=Interval(est.value, est.ci_low, est.ci_high),
                support=int(match.sum()),
                n_rows=len(user),
            )
        )
    return out
