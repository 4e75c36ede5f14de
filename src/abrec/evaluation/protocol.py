"""Offline evaluation of fitted recommenders on a `ProtocolSplit`: metrics, CIs, tests.

`evaluate_models` ranks every item except each user's training items for every scored
user (in batches, to bound memory), computes per-user metrics on the full relevance set
and on the cold-item slice (only relevant items never seen in training count; users with
no such item are not scored in that slice), then bootstrap CIs per model and paired
comparisons of every model against a baseline with Holm correction across models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from abrec.data.splits import ProtocolSplit
from abrec.errors import ConfigError, DataError
from abrec.evaluation import metrics as M
from abrec.evaluation import significance as S
from abrec.jsonsafe import json_safe
from abrec.models.base import Recommender, top_k
from abrec.stats.bootstrap import bootstrap

SLICES: tuple[str, ...] = ("all", "cold")
TESTS: tuple[str, ...] = ("ttest", "wilcoxon", "permutation")

ProgressFn = Callable[[str, int, int], None]


@dataclass
class EvaluationResult:
    """Per-user metrics, summary with CIs and paired comparisons against a baseline.

    Attributes:
        per_user: one row per (slice, model, user): `slice`, `model`, `user_idx`, `user_id`
            and one column per metric (NaN where a metric does not apply to the slice).
        summary: one row per (slice, model, metric): `mean`, `ci_low`, `ci_high`, `n_users`
            (catalogue coverage is a single number: its CI bounds are NaN).
        comparisons: one row per (slice, metric, model != baseline): means, `diff` with its
            paired bootstrap CI (`diff_low`, `diff_high`), `lift`
            (relative difference), raw and Holm-corrected p-values of the three tests.
    """

    per_user: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    metrics: list[str]
    ks: list[int]
    baseline: str
    protocol: str
    level: float
    n_bootstrap: int
    n_permutations: int
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    def value(self, model: str, metric: str, slice_: str = "all") -> float:
        """Mean of `metric` for `model` in a slice."""
        row = self.summary[
            (self.summary["model"] == model)
            & (self.summary["metric"] == metric)
            & (self.summary["slice"] == slice_)
        ]
        if row.empty:
            raise KeyError(f"no summary for model={model!r} metric={metric!r} slice={slice_!r}")
        return float(row["mean"].iloc[0])

    def compare(self, baseline: str, models: Sequence[str] | None = None) -> pd.DataFrame:
        """Paired comparisons of `models` (default: all others) against another `baseline`.

        Same tests, seed and Holm correction as `comparisons`, recomputed from `per_user`.
        """
        names = list(dict.fromkeys(self.per_user["model"]))
        if baseline not in names:
            raise ConfigError(f"baseline {baseline!r} is not one of the models {names}")
        chosen = [baseline, *(n for n in (models or names) if n != baseline)]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ConfigError(f"unknown model(s) {unknown}; evaluated models are {names}")
        cols = [m for m in self.metrics if m in self.per_user.columns]
        return _compare(
            self.per_user,
            cols,
            chosen,
            baseline,
            n_permutations=self.n_permutations,
            n_bootstrap=self.n_bootstrap,
            level=self.level,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested summary: models -> slice -> metric -> {mean, ci_low, ci_high, n}."""
        models: dict[str, Any] = {}
        for rec in self.summary.to_dict("records"):
            cell = models.setdefault(rec["model"], {}).setdefault(rec["slice"], {})
            cell[rec["metric"]] = {
                "mean": json_safe(rec["mean"]),
                "ci_low": json_safe(rec["ci_low"]),
                "ci_high": json_safe(rec["ci_high"]),
                "n_users": int(rec["n_users"]),
            }
        comps = json_safe(self.comparisons.to_dict("records"))
        return {
            "protocol": self.protocol,
            "baseline": self.baseline,
            "ks": self.ks,
            "metrics": self.metrics,
            "confidence_level": self.level,
            "n_bootstrap": self.n_bootstrap,
            "n_permutations": self.n_permutations,
            "seed": self.seed,
            "info": json_safe(self.info),
            "models": models,
            "comparisons": comps,
        }


def _rank_batch(
    model: Recommender, users: np.ndarray, seen: sp.csr_matrix, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (before exclusion) and top-k over items not seen in training."""
    scores = np.asarray(model.score(users), dtype=np.float32)
    if scores.shape != (len(users), seen.shape[1]):
        raise DataError(
            f"{type(model).__name__}.score returned shape {scores.shape}, expected "
            f"{(len(users), seen.shape[1])}"
        )
    if np.isnan(scores).any():
        raise DataError(f"{type(model).__name__} returned NaN scores; fix the model")
    masked = scores.copy()
    coo = seen.tocoo()
    masked[coo.row, coo.col] = -np.inf
    items, _ = top_k(masked, k)
    return scores, items


def _user_metrics(
    topk: np.ndarray,
    relevant: sp.csr_matrix,
    auc: np.ndarray | None,
    ks: Sequence[int],
    novelty_info: np.ndarray | None,
    embeddings: np.ndarray | None,
) -> dict[str, np.ndarray]:
    out = M.ranking_metrics(topk, relevant, ks)
    if auc is not None:
        out["auc"] = auc
    for k in ks:
        if novelty_info is not None:
            out[f"novelty@{k}"] = novelty_info[topk[:, :k]].mean(axis=1)
        if embeddings is not None and k >= 2:
            out[f"diversity@{k}"] = M.intra_list_diversity(topk, embeddings, k)
    return out


@dataclass(frozen=True)
class _Targets:
    """The scored users of a split and what they are judged against (all and cold slices)."""

    train: sp.csr_matrix
    users: np.ndarray
    relevant: sp.csr_matrix
    cold_relevant: sp.csr_matrix
    cold_mask: np.ndarray
    info_items: np.ndarray
    kmax: int

    @classmethod
    def of(cls, split: ProtocolSplit, kmax: int) -> _Targets:
        train = split.train.matrix.tocsr()
        users = np.asarray(split.scored_users, dtype=np.int64)
        if users.size == 0:
            raise DataError(f"split {split.name!r} has no scored users (no relevant test items)")
        cold_relevant = sp.csr_matrix(split.cold_relevant())[users]
        counts = np.asarray(train.sum(axis=0)).ravel()
        n_train_users = int((np.diff(train.indptr) > 0).sum())
        return cls(
            train=train,
            users=users,
            relevant=sp.csr_matrix(split.relevant)[users],
            cold_relevant=cold_relevant,
            cold_mask=np.diff(cold_relevant.indptr) > 0,
            info_items=M.self_information(counts, n_train_users),
            kmax=kmax,
        )


def _check_args(
    models: Mapping[str, Recommender],
    baseline: str | None,
    ks: Sequence[int],
    batch_size: int,
    n_bootstrap: int,
    level: float,
) -> tuple[str, list[int]]:
    """Validate `evaluate_models` arguments; return the baseline and the sorted cut-offs."""
    if not models:
        raise ConfigError("evaluate_models needs at least one model")
    names = list(models)
    base = names[0] if baseline is None else baseline
    if base not in models:
        raise ConfigError(f"baseline {base!r} is not one of the models {names}; pick one of them")
    cutoffs = sorted({int(k) for k in ks})
    if not cutoffs or cutoffs[0] < 1:
        raise ConfigError(f"ks must be positive integers, got {cutoffs}")
    if batch_size < 1:
        raise ConfigError("batch_size must be positive")
    if n_bootstrap < 100:
        raise ConfigError(f"n_bootstrap must be at least 100, got {n_bootstrap}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be strictly between 0 and 1, got {level}")
    return base, cutoffs


@dataclass(frozen=True)
class ChunkTask:
    """What every user chunk of one evaluation shares (picklable, for other processes).

    Attributes:
        targets: the split's scored users and their relevance sets.
        ks: cut-offs (each <= `targets.kmax`).
        embeddings: float64 item vectors for diversity, or None.
        batch_size: users scored per `Recommender.score` call.
        compute_auc: whether to compute AUC (needs the full score rows).
    """

    targets: _Targets
    ks: tuple[int, ...]
    embeddings: np.ndarray | None
    batch_size: int
    compute_auc: bool

    @property
    def n_users(self) -> int:
        """Number of scored users (chunks index `targets.users[start:stop]`)."""
        return len(self.targets.users)


@dataclass(frozen=True)
class UserChunk:
    """Per-user metrics for the scored users `targets.users[start:stop]`.

    `per_all` has one row per user of the range; `per_cold` one row per user of the range in
    the cold slice (same order); `topk` the top-`kmax` item indices per user of the range.
    """

    start: int
    stop: int
    per_all: dict[str, np.ndarray]
    per_cold: dict[str, np.ndarray]
    topk: np.ndarray


#: ``runner(model_name, model, task, progress)`` -> metrics of all `task.n_users` users, in
#: order. The default runs `evaluate_users` over every user in this process; a runner may
#: split the users into ranges, evaluate them elsewhere and join them with `merge_chunks`.
ChunkRunner = Callable[[str, Recommender, ChunkTask, ProgressFn | None], UserChunk]


def evaluate_users(
    model: Recommender,
    task: ChunkTask,
    start: int,
    stop: int,
    progress: Callable[[int], None] | None = None,
) -> UserChunk:
    """Rank the scored users `task.targets.users[start:stop]` in batches of `task.batch_size`;
    their per-user metrics (all and cold slices) and top lists.

    Every metric is a function of one user's row only (and a model's scores do not depend on
    the batch), so the values of a user are the same whatever range it is evaluated in.
    `progress(users_done_in_range)` is called after each batch.
    """
    t = task.targets
    n = len(t.users)
    if not 0 <= start <= stop <= n:
        raise ConfigError(f"user range [{start}, {stop}) is outside [0, {n}]")
    users = t.users[start:stop]
    relevant, cold_relevant = t.relevant[start:stop], t.cold_relevant[start:stop]
    cold_mask = t.cold_mask[start:stop]
    m = len(users)
    topk = np.empty((m, t.kmax), dtype=np.int64)
    auc_all = np.empty(m) if task.compute_auc else None
    auc_cold = np.full(m, np.nan) if task.compute_auc else None
    for lo in range(0, m, task.batch_size):
        sl = slice(lo, lo + task.batch_size)
        seen = t.train[users[sl]]
        scores, items = _rank_batch(model, users[sl], seen, t.kmax)
        topk[sl] = items
        if auc_all is not None and auc_cold is not None:
            auc_all[sl] = M.auc_scores(scores, relevant[sl], seen)
            auc_cold[sl] = M.auc_scores(scores, cold_relevant[sl], seen)
        if progress is not None:
            progress(min(lo + task.batch_size, m))
    per_all = _user_metrics(topk, relevant, auc_all, task.ks, t.info_items, task.embeddings)
    cold_auc = None if auc_cold is None else auc_cold[cold_mask]
    per_cold = _user_metrics(
        topk[cold_mask], cold_relevant[cold_mask], cold_auc, task.ks, None, None
    )
    return UserChunk(start, stop, per_all, per_cold, topk)


def merge_chunks(chunks: Sequence[UserChunk], n_users: int) -> UserChunk:
    """Join chunks covering ``[0, n_users)`` exactly (any order) into one, in user order."""
    parts = sorted(chunks, key=lambda c: c.start)
    edges = [0, *(c.stop for c in parts)]
    if [c.start for c in parts] != edges[:-1] or edges[-1] != n_users:
        raise ConfigError(
            f"chunks {[(c.start, c.stop) for c in parts]} do not tile [0, {n_users}) exactly"
        )
    if len(parts) == 1:
        return parts[0]

    def cat(key: str, rows: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.concatenate([r[key] for r in rows])

    alls, colds = [c.per_all for c in parts], [c.per_cold for c in parts]
    return UserChunk(
        0,
        n_users,
        {key: cat(key, alls) for key in alls[0]},
        {key: cat(key, colds) for key in colds[0]},
        np.concatenate([c.topk for c in parts]),
    )


def run_in_process(
    name: str, model: Recommender, task: ChunkTask, progress: ProgressFn | None
) -> UserChunk:
    """The default `ChunkRunner`: every user in this process, in batches."""
    n = task.n_users
    report = None if progress is None else (lambda done: progress(name, done, n))
    return evaluate_users(model, task, 0, n, report)


def evaluate_models(
    models: Mapping[str, Recommender],
    split: ProtocolSplit,
    ks: Sequence[int] = (5, 10, 20),
    item_embeddings: np.ndarray | None = None,
    baseline: str | None = None,
    *,
    n_bootstrap: int = 2000,
    n_permutations: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int = 256,
    compute_auc: bool = True,
    progress: ProgressFn | None = None,
    runner: ChunkRunner | None = None,
) -> EvaluationResult:
    """Evaluate fitted `models` on `split` (full ranking minus training items).

    Args:
        models: fitted recommenders by display name (same index spaces as `split`).
        ks: cut-offs; top-max(ks) lists are computed once per user.
        item_embeddings: ``[n_items, dim]`` item vectors for intra-list diversity (optional).
        baseline: model every other model is compared with (default: the first model).
        progress: called as ``progress(model, users_done, users_total)`` after each batch.
        runner: computes the per-user metrics of one model (default `run_in_process`; e.g.
            `abrec.scale.RayChunkRunner` spreads user chunks over a Ray cluster). The
            summary and comparisons are computed here from the joined per-user metrics.
    """
    base, ks = _check_args(models, baseline, ks, batch_size, n_bootstrap, level)
    n_users, n_items = split.train.matrix.shape
    if item_embeddings is not None and np.asarray(item_embeddings).shape[0] != n_items:
        raise DataError(
            f"item_embeddings has {np.asarray(item_embeddings).shape[0]} rows for {n_items} items"
        )
    kmax = min(max(ks), n_items)
    ks = [k for k in ks if k <= kmax]
    t = _Targets.of(split, kmax)
    cold_users = t.users[t.cold_mask]
    emb = None if item_embeddings is None else np.asarray(item_embeddings, dtype=np.float64)

    task = ChunkTask(t, tuple(ks), emb, batch_size, compute_auc)
    run_model = runner or run_in_process

    frames: list[pd.DataFrame] = []
    coverage: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        res = run_model(name, model, task, progress)
        per_all, per_cold, topk = res.per_all, res.per_cold, res.topk
        coverage[name] = {f"coverage@{k}": M.catalog_coverage(topk, n_items, k) for k in ks}
        for slice_name, uidx, vals in (("all", t.users, per_all), ("cold", cold_users, per_cold)):
            df = pd.DataFrame(vals)
            df.insert(0, "user_id", split.train.user_ids[uidx])
            df.insert(0, "user_idx", uidx)
            df.insert(0, "model", name)
            df.insert(0, "slice", slice_name)
            frames.append(df)
    per_user = pd.concat(frames, ignore_index=True)
    metric_cols = [
        c for c in per_user.columns if c not in ("slice", "model", "user_idx", "user_id")
    ]
    summary = _summarise(per_user, metric_cols, coverage, n_bootstrap, level, seed)
    comparisons = _compare(
        per_user,
        metric_cols,
        list(models),
        base,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        level=level,
        seed=seed,
    )
    info = {
        "n_users": int(n_users),
        "n_items": int(n_items),
        "n_scored_users": len(t.users),
        "n_cold_scored_users": len(cold_users),
        "n_cold_items": int(np.asarray(split.cold_items).sum()),
        "cold_relevant_fraction": float(split.cold_relevant_fraction()),
        "n_relevant": int(t.relevant.nnz),
    }
    return EvaluationResult(
        per_user=per_user,
        summary=summary,
        comparisons=comparisons,
        metrics=[*metric_cols, *(f"coverage@{k}" for k in ks)],
        ks=ks,
        baseline=base,
        protocol=split.name,
        level=level,
        n_bootstrap=n_bootstrap,
        n_permutations=n_permutations,
        seed=seed,
        info=info,
    )


@dataclass(frozen=True)
class MeanCIs:
    """Per metric column: mean, percentile bootstrap CI of the mean, and users counted."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def mean_cis(values: np.ndarray, *, n_boot: int, level: float, seed: int) -> MeanCIs:
    """Percentile bootstrap CI of each column's mean with `abrec.stats.bootstrap`.

    NaN entries (users a metric does not apply to) are left out of their column. Every
    column is resampled with the same seed, so columns without NaN resample the same users.
    A column with a single value has the degenerate interval [value, value].
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    k = x.shape[1]
    out = MeanCIs(np.empty(k), np.empty(k), np.empty(k), np.empty(k, dtype=np.int64))
    for j in range(k):
        col = x[~np.isnan(x[:, j]), j]
        if col.size == 0:
            raise DataError(f"column {j} has no values to bootstrap")
        out.n[j], out.mean[j] = col.size, col.mean()
        if col.size == 1:
            out.low[j] = out.high[j] = col[0]
            continue
        ci = bootstrap(col, np.mean, n_resamples=n_boot, confidence=level, seed=seed).interval
        out.low[j], out.high[j] = ci.low, ci.high
    return out


def _summarise(
    per_user: pd.DataFrame,
    metric_cols: list[str],
    coverage: Mapping[str, Mapping[str, float]],
    n_bootstrap: int,
    level: float,
    seed: int,
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for (slice_name, model), grp in per_user.groupby(["slice", "model"], sort=False):
        cols = [c for c in metric_cols if grp[c].notna().any()]
        if grp.empty or not cols:
            continue
        ci = mean_cis(grp[cols].to_numpy(), n_boot=n_bootstrap, level=level, seed=seed)
        for j, metric in enumerate(cols):
            rows.append(
                {
                    "slice": slice_name,
                    "model": model,
                    "metric": metric,
                    "mean": float(ci.mean[j]),
                    "ci_low": float(ci.low[j]),
                    "ci_high": float(ci.high[j]),
                    "n_users": int(ci.n[j]),
                }
            )
        if slice_name == "all":
            for metric, value in coverage[str(model)].items():
                rows.append(
                    {
                        "slice": "all",
                        "model": model,
                        "metric": metric,
                        "mean": value,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "n_users": len(grp),
                    }
                )
    return pd.DataFrame(
        rows, columns=["slice", "model", "metric", "mean", "ci_low", "ci_high", "n_users"]
    )


def _compare(
    per_user: pd.DataFrame,
    metric_cols: list[str],
    names: list[str],
    baseline: str,
    *,
    n_permutations: int,
    n_bootstrap: int,
    level: float,
    seed: int,
) -> pd.DataFrame:
    """Paired tests of each model against `baseline`, with a bootstrap CI of the difference."""
    rows: list[dict[str, Any]] = []
    others = [n for n in names if n != baseline]
    for slice_name in SLICES:
        part = per_user[per_user["slice"] == slice_name]
        base = part[part["model"] == baseline].set_index("user_idx")
        if base.empty:
            continue
        cols = [c for c in metric_cols if base[c].notna().all()]
        for name in others:
            other = part[part["model"] == name].set_index("user_idx").loc[base.index]
            a = other[cols].to_numpy(np.float64)
            b = base[cols].to_numpy(np.float64)
            if len(a) < 2:
                continue
            tt = S.paired_ttest(a, b)
            wx = S.wilcoxon_signed_rank(a, b)
            pm = S.permutation_test(a, b, n_permutations=n_permutations, seed=seed)
            ci = mean_cis(a - b, n_boot=n_bootstrap, level=level, seed=seed)
            ma, mb = a.mean(axis=0), b.mean(axis=0)
            for j, metric in enumerate(cols):
                rows.append(
                    {
                        "slice": slice_name,
                        "metric": metric,
                        "model": name,
                        "baseline": baseline,
                        "n_users": len(a),
                        "mean_model": float(ma[j]),
                        "mean_baseline": float(mb[j]),
                        "diff": float(ma[j] - mb[j]),
                        "diff_low": float(ci.low[j]),
                        "diff_high": float(ci.high[j]),
                        "lift": float(ma[j] / mb[j] - 1.0) if mb[j] != 0 else np.nan,
                        "p_ttest": float(tt.p_value[j]),
                        "p_wilcoxon": float(wx.p_value[j]),
                        "p_permutation": float(pm.p_value[j]),
                    }
                )
    cols_out = [
        "slice", "metric", "model", "baseline", "n_users", "mean_model", "mean_baseline",
        "diff", "diff_low", "diff_high", "lift", *(f"p_{t}" for t in TESTS), *(f"p_{t}_holm" for t in TESTS),
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols_out[: -len(TESTS)])
    for t in TESTS:
        df[f"p_{t}_holm"] = np.nan
        if df.empty:
            continue
        for _, idx in df.groupby(["slice", "metric"], sort=False).groups.items():
            df.loc[idx, f"p_{t}_holm"] = S.holm(df.loc[idx, f"p_{t}"].to_numpy())
    return df[cols_out]
