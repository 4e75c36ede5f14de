"""Compact EASE weights: NDCG@10 and size on disk of float16 storage and top-k pruning.

On MovieLens latest-small, protocol ml-small-temporal-v1 (`abrec.data`, `abrec.evaluation`):

1. Choosing k (no test data): a temporal validation split is carved from the TRAINING period
   (`abrec.data.splits.validation_split`, the last 20% of each user's training events); EASE
   dense float32 and top-k float16 for every `--ks` are fitted on the rest and compared on it.
   The chosen k is the smallest whose validation NDCG@10 is not significantly below dense
   (paired permutation p >= 0.05) AND at most `MAX_VAL_LOSS` (0.5%) below it in mean.
2. Test split: EASE dense float32 (baseline), dense float16, and top-k float16 for every k,
   each with the per-user paired difference in NDCG@10 (bootstrap 95% CI, permutation and
   t-test p-values, `abrec.evaluation.significance`), its saved size on disk and the median
   in-process time of `score_history` for one user (the service's per-request scoring).
3. The demo bundle (what `abrec demo` saves: `abrec.demo` served config, offline `run` with
   `save_models_dir`), fitted today (`storage_dtype` float32, no pruning) and compact
   (float16 + the chosen k on every EASE-family part): size on disk and, per served model,
   the paired NDCG@10 comparison on the test split. Skipped with `--skip-demo`.

Prints tables and writes JSON (`--output`, default runs/bench_compact.json). Takes about
10-15 minutes on 2 CPU cores (the demo models dominate; `--skip-demo` takes about 2).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_compact.py [--ks 100 200 500 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abrec.data import movielens_dataset
from abrec.data.splits import ml_small_temporal_v1, protocol_split, validation_split
from abrec.evaluation.protocol import evaluate_models, mean_cis
from abrec.evaluation.significance import paired_ttest, permutation_test
from abrec.models.ease import EASE

ROOT = Path(__file__).resolve().parents[1]
METRIC = "ndcg@10"
ALPHA = 0.05
MAX_VAL_LOSS = 0.005  # relative NDCG@10 loss on validation a chosen k may have
N_BOOT = 2000
N_PERM = 5000


def dir_bytes(path: Path) -> int:
    """Total size of the files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def ease_variants(ks: Sequence[int], lambda_: float) -> dict[str, EASE]:
    """Unfitted EASE: dense float32 (baseline), dense float16, top-k float16 per k."""
    out = {
        "dense_f32": EASE(lambda_=lambda_),
        "dense_f16": EASE(lambda_=lambda_, storage_dtype="float16"),
    }
    for k in ks:
        out[f"top{k}_f16"] = EASE(lambda_=lambda_, storage_dtype="float16", prune_top_k=k)
    return out


def compare_rows(result: Any) -> list[dict[str, Any]]:
    """The all-users NDCG@10 comparisons of an EvaluationResult, as plain dicts."""
    c = result.comparisons
    c = c[(c["slice"] == "all") & (c["metric"] == METRIC)]
    cols = ["model", "mean_model", "mean_baseline", "diff", "diff_low", "diff_high", "lift"]
    return [
        {**{k: r[k] for k in cols}, "p_perm": r["p_permutation"], "p_t": r["p_ttest"]}
        for r in c.to_dict("records")
    ]


def choose_k(train: Any, items: Any, ks: Sequence[int], lambda_: float) -> dict[str, Any]:
    """Smallest k whose validation NDCG@10 is not significantly below dense (module doc)."""
    fit, val = validation_split(train, "temporal", 0.2)
    split = protocol_split(fit, val)
    models = {n: m for n, m in ease_variants(ks, lambda_).items() if n != "dense_f16"}
    for m in models.values():
        m.fit(fit, items)
    res = evaluate_models(
        models, split, ks=(10,), baseline="dense_f32", n_bootstrap=N_BOOT,
        n_permutations=N_PERM, compute_auc=False,
    )  # fmt: skip
    rows = compare_rows(res)
    chosen = None
    for k in sorted(ks):
        r = next(r for r in rows if r["model"] == f"top{k}_f16")
        if r["p_perm"] >= ALPHA and r["diff"] >= -MAX_VAL_LOSS * r["mean_baseline"]:
            chosen = k
            break
    return {"rows": rows, "chosen_k": chosen, "n_users": len(split.scored_users)}


def test_split_table(split: Any, items: Any, ks: Sequence[int], lambda_: float, tmp: Path):
    """Fit every variant on the protocol's training data; NDCG@10 comparisons and sizes."""
    models = ease_variants(ks, lambda_)
    sizes: dict[str, int] = {}
    fit_s: dict[str, float] = {}
    for name, m in models.items():
        t0 = time.perf_counter()
        m.fit(split.train, items)
        fit_s[name] = time.perf_counter() - t0
        sizes[name] = dir_bytes(m.save(tmp / "ease" / name))
    latency = {name: score_latency_ms(m, split) for name, m in models.items()}
    res = evaluate_models(
        dict(models), split, ks=(10,), baseline="dense_f32", n_bootstrap=N_BOOT,
        n_permutations=N_PERM, compute_auc=False,
    )  # fmt: skip
    rows = compare_rows(res)
    for r in rows:
        r["bytes"] = sizes[r["model"]]
        r["score_ms"] = latency[r["model"]]
    base = {
        "model": "dense_f32",
        "mean_model": res.value("dense_f32", METRIC),
        "bytes": sizes["dense_f32"],
        "score_ms": latency["dense_f32"],
    }
    return {"baseline": base, "rows": rows, "fit_s": fit_s}


def score_latency_ms(model: EASE, split: Any, n: int = 300) -> float:
    """Median milliseconds of `score_history` for one user (what the service does per request),
    over the first `n` scored users' training histories."""
    X = split.train.matrix.tocsr()
    times = []
    for u in split.scored_users[:n]:
        hist = X.indices[X.indptr[u] : X.indptr[u + 1]]
        t0 = time.perf_counter()
        model.score_history([hist])
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def strip_compact(cfg: Any) -> Any:
    """The run config with today's (dense float32) storage on every model."""
    models = [
        m.model_copy(
            update={
                "params": {
                    k: v for k, v in m.params.items() if k not in ("storage_dtype", "prune_top_k")
                }
            }
        )
        for m in cfg.models
    ]
    return cfg.model_copy(update={"models": models})


def demo_table(k: int, tmp: Path) -> dict[str, Any]:
    """Demo bundle today vs compact: sizes and paired NDCG@10 per served model."""
    from abrec.demo import (
        DemoOptions,
        compact_config,
        demo_config,
        served_config,
        without_missing_finetune,
    )
    from abrec.offline.run import run

    opts = DemoOptions()
    cfg, opts, notes = without_missing_finetune(served_config(demo_config(None), opts), opts)
    compact = {"storage_dtype": "float16", "prune_top_k": k}
    variants = {"today": strip_compact(cfg), "compact": compact_config(strip_compact(cfg), compact)}
    per_user: dict[str, pd.DataFrame] = {}
    sizes: dict[str, dict[str, int]] = {}
    secs: dict[str, float] = {}
    for label, c in variants.items():
        t0 = time.perf_counter()
        out = run(c, None, write=False, quiet=True, save_models_dir=tmp / f"demo_{label}")
        secs[label] = time.perf_counter() - t0
        bundle = tmp / f"demo_{label}"
        sizes[label] = {
            "total": dir_bytes(bundle),
            **{p.name: dir_bytes(p) for p in sorted((bundle / "models").iterdir())},
        }
        pu = out.result.per_user
        per_user[label] = pu[pu["slice"] == "all"].set_index(["model", "user_idx"])[METRIC]
    rows = []
    for m in [m.name for m in cfg.models]:
        a = per_user["compact"].loc[m].sort_index()
        b = per_user["today"].loc[m].loc[a.index]
        a_, b_ = a.to_numpy(np.float64), b.to_numpy(np.float64)
        ci = mean_cis(a_ - b_, n_boot=N_BOOT, level=0.95, seed=0)
        rows.append(
            {
                "model": m,
                "today": float(b_.mean()),
                "compact": float(a_.mean()),
                "diff": float((a_ - b_).mean()),
                "diff_low": float(np.asarray(ci.low).ravel()[0]),
                "diff_high": float(np.asarray(ci.high).ravel()[0]),
                "p_perm": float(permutation_test(a_, b_, N_PERM, seed=0).p_value[0]),
                "p_t": float(paired_ttest(a_, b_).p_value[0]),
                "n_users": len(a_),
            }
        )
    return {"k": k, "notes": notes, "sizes": sizes, "rows": rows, "seconds": secs}


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def print_rows(rows: list[dict[str, Any]], base_bytes: int | None = None) -> None:
    for r in rows:
        size = f"  {mb(r['bytes']):>10} ({r['bytes'] / base_bytes:.1%})" if base_bytes else ""
        if "score_ms" in r:
            size += f"  {r['score_ms']:.2f} ms/user"
        print(
            f"  {r['model']:<14} {r['mean_model']:.5f}  diff {r['diff']:+.5f} "
            f"[{r['diff_low']:+.5f}, {r['diff_high']:+.5f}]  p_perm {r['p_perm']:.4f} "
            f"p_t {r['p_t']:.4f}{size}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[100, 200, 500, 1000])
    ap.add_argument("--lambda", dest="lambda_", type=float, default=500.0)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--only-demo", action="store_true", help="skip 1-2 (needs --demo-k)")
    ap.add_argument("--demo-k", type=int, default=None, help="k for the demo (default: chosen)")
    ap.add_argument("--output", type=Path, default=ROOT / "runs" / "bench_compact.json")
    args = ap.parse_args(argv)
    if args.only_demo and args.demo_k is None:
        print("bench_compact: --only-demo needs --demo-k", file=sys.stderr)
        return 2
    if min(args.ks) < 1:
        print("bench_compact: --ks must be positive", file=sys.stderr)
        return 2

    inter, items = movielens_dataset()
    split = ml_small_temporal_v1(inter)
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
        "protocol": split.name,
        "metric": METRIC,
        "lambda_": args.lambda_,
    }
    chosen = None
    if not args.only_demo:
        print("1. choosing k on a validation split of the training period")
        val = choose_k(split.train, items, args.ks, args.lambda_)
        report["validation"] = val
        print_rows(val["rows"])
        chosen = val["chosen_k"]
        print(f"  chosen k = {chosen} ({val['n_users']} validation users)")

    with tempfile.TemporaryDirectory(prefix="bench_compact_") as d:
        tmp = Path(d)
        if not args.only_demo:
            print("2. EASE on the test split (baseline dense float32)")
            test = test_split_table(split, items, args.ks, args.lambda_, tmp)
            report["test"] = test
            b = test["baseline"]
            print(
                f"  {'dense_f32':<14} {b['mean_model']:.5f}  {mb(b['bytes']):>10}  "
                f"{b['score_ms']:.2f} ms/user"
            )
            print_rows(test["rows"], b["bytes"])
        k = args.demo_k or chosen
        if not args.skip_demo and k is not None:
            print(f"3. demo bundle today vs compact (float16 + top-{k})")
            demo = demo_table(k, tmp)
            report["demo"] = demo
            s = demo["sizes"]
            ratio = s["compact"]["total"] / s["today"]["total"]
            print(f"  size today {mb(s['today']['total'])}, compact {mb(s['compact']['total'])} "
                  f"({ratio:.1%})")  # fmt: skip
            for label in ("today", "compact"):
                parts = ", ".join(f"{n} {mb(v)}" for n, v in s[label].items() if n != "total")
                print(f"    {label}: {parts}")
            for r in demo["rows"]:
                print(
                    f"  {r['model']:<24} today {r['today']:.5f} compact {r['compact']:.5f} "
                    f"diff {r['diff']:+.5f} [{r['diff_low']:+.5f}, {r['diff_high']:+.5f}] "
                    f"p_perm {r['p_perm']:.4f} p_t {r['p_t']:.4f} (n={r['n_users']})"
                )
            demo["size_ratio"] = ratio
            demo["meets_goal"] = ratio <= 0.25 and all(
                r["p_perm"] >= ALPHA or r["diff"] >= 0 for r in demo["rows"]
            )
            print(f"  goal (<= 25% of today's size, no significant loss): {demo['meets_goal']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=_json_default))
    print(f"wrote {args.output}")
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)  # type: ignore[arg-type]
    raise TypeError(type(o))


if __name__ == "__main__":
    sys.exit(main())
