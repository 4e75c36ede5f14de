"""Wall time of abrec.scale on a local Ray instance against the single-process paths.

    PYTHONPATH=src python benchmarks/bench_ray.py [--texts 2000] [--cpus 2]

MovieLens latest-small (ABREC_DATA): (1) the per-user evaluation of popularity + ALS
(64 factors) on ml-small-temporal-v1, (2) encoding the first `--texts` catalogue texts with
the bundled all-MiniLM-L6-v2 (no cache). Ray start-up is timed apart; each Ray figure
includes starting its workers (actors load the encoder once). Checks the results agree.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import ray

    from abrec.data import (
        load_movielens,
        ml_small_temporal_v1,
        movielens_catalog,
        movielens_interactions,
    )
    from abrec.embed.encoder import TextEncoder
    from abrec.evaluation.protocol import evaluate_models
    from abrec.models.registry import build_model
    from abrec.scale import encode_catalog_ray, evaluate_ray

    raw = load_movielens(os.path.join(os.environ["ABREC_DATA"], "ml-latest-small"))
    inter, items = movielens_interactions(raw), movielens_catalog(raw)
    split = ml_small_temporal_v1(inter)
    models = {
        "pop": build_model("popularity").fit(split.train, items),
        "als": build_model("als", factors=64, iterations=15, seed=42).fit(split.train, items),
    }
    opts = {"ks": (5, 10, 20), "n_bootstrap": 200, "n_permutations": 200}
    texts = [str(t) for t in items.text[: args.texts]]

    t = time.perf_counter()
    want = evaluate_models(models, split, **opts)  # type: ignore[arg-type]
    t_eval = time.perf_counter() - t
    t = time.perf_counter()
    enc = TextEncoder(use_cache=False, show_progress=False)
    want_emb = enc.encode(texts)
    t_enc = time.perf_counter() - t

    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t
    try:
        t = time.perf_counter()
        got = evaluate_ray(models, split, **opts)  # type: ignore[arg-type]
        r_eval = time.perf_counter() - t
        t = time.perf_counter()
        got_emb = encode_catalog_ray(texts, TextEncoder(use_cache=False, show_progress=False))
        r_enc = time.perf_counter() - t
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(got.per_user, want.per_user, check_exact=True)
    diff = float(np.abs(got_emb - want_emb).max())
    print(f"cpus={args.cpus} ray.init {t_init:.1f} s")
    print(f"evaluate ({len(split.scored_users)} users, 2 models): process {t_eval:.1f} s, "
          f"ray {r_eval:.1f} s; per-user table identical")  # fmt: skip
    print(f"encode ({len(texts)} texts, MiniLM): process {t_enc:.1f} s, ray {r_enc:.1f} s; "
          f"max |diff| {diff:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
