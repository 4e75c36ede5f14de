"""abrec.scale on a local Ray instance: the same results as the single-process paths.

One Ray instance (2 CPUs) serves the whole module. Scores and per-user metrics must be
bit-identical to the in-process path; embeddings agree to float32 rounding (other batches).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from abrec.data.types import Interactions, ItemCatalog
from abrec.errors import ConfigError
from abrec.evaluation.protocol import evaluate_models
from abrec.models.bundle import ModelBundle
from abrec.models.registry import build_model


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"{reason} (CI=true: Ray is required)")
    pytest.skip(reason)


def _tiny_bert() -> Any:
    """`tests/unit/tiny_bert.py`'s seeded tiny BERT (imported by path: another test folder)."""
    spec = importlib.util.spec_from_file_location(
        "tiny_bert", Path(__file__).parents[1] / "unit" / "tiny_bert.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.tiny_bert_dir


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        _missing("ray is not installed: pip install 'abrec[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EASE, ALS and item-kNN fitted on a synthetic 400 x 300 data set, saved as a bundle."""
    rng = np.random.default_rng(7)
    n_users, n_items = 400, 300
    u = rng.integers(0, n_users, 12_000)
    i = (rng.zipf(1.3, 12_000) - 1) % n_items
    keys = np.unique(u * n_items + i)
    uid = np.array([f"u{j}" for j in range(n_users)])
    iid = np.arange(n_items) + 10_000
    train = Interactions(keys // n_items, keys % n_items, uid, iid)
    items = ItemCatalog(iid, np.array([f"item {j}" for j in iid]))
    models = {
        "ease": build_model("ease", lambda_=50.0).fit(train, items),
        "als": build_model("als", factors=16, iterations=5).fit(train, items),
        "knn": build_model("itemknn").fit(train, items),
    }
    path = tmp_path_factory.mktemp("bundle")
    return ModelBundle(models, uid, iid).save(path)


@pytest.mark.parametrize("model", ["ease", "als", "knn"])
def test_batch_scoring_is_bit_identical_to_one_process(
    ray_local: Any, bundle_dir: Path, model: str
) -> None:
    from abrec.scale import score_users_ray

    bundle = ModelBundle.load(bundle_dir)
    rec = bundle.models[model]
    users = np.array([*(f"u{j}" for j in range(399, -1, -3)), "nobody"])  # shuffled + unknown
    got = score_users_ray(bundle_dir, model, users, k=10, batch_size=37)
    idx = np.array([int(u[1:]) if u != "nobody" else -1 for u in users])
    want_items, want_scores = rec.recommend(idx, 10)  # every user in one call
    np.testing.assert_array_equal(got.item_idx, want_items)
    assert got.scores.dtype == np.float32
    assert np.array_equal(got.scores, want_scores)  # bit-equal, not approximately
    np.testing.assert_array_equal(got.item_ids, bundle.item_ids[want_items])
    assert got.known.tolist() == [True] * (len(users) - 1) + [False]
    frame = got.to_frame()
    assert len(frame) == 10 * len(users)
    assert frame["rank"].tolist()[:10] == list(range(1, 11))


def test_batch_scoring_rejects_bad_input(ray_local: Any, bundle_dir: Path, tmp_path: Path) -> None:
    from abrec.scale import score_users_ray

    with pytest.raises(ConfigError, match="no model"):
        score_users_ray(bundle_dir, "nope", ["u1"], k=5)
    with pytest.raises(ConfigError, match="not a model bundle"):
        score_users_ray(tmp_path, "ease", ["u1"], k=5)
    with pytest.raises(ConfigError, match="k must be"):
        score_users_ray(bundle_dir, "ease", ["u1"], k=0)


def test_evaluation_per_user_metrics_equal_single_process(ray_local: Any, ml_small: Any) -> None:
    """MovieLens, the temporal protocol: popularity and ALS, with AUC and diversity."""
    from abrec.data import ml_small_temporal_v1
    from abrec.scale import evaluate_ray

    split = ml_small_temporal_v1(ml_small.inter)
    models = {
        "pop": build_model("popularity").fit(split.train, ml_small.items),
        "als": build_model("als", factors=32, iterations=5).fit(split.train, ml_small.items),
    }
    emb = np.random.default_rng(3).normal(size=(split.n_items, 8))
    opts: dict[str, Any] = {
        "ks": (5, 10),
        "item_embeddings": emb,
        "n_bootstrap": 200,
        "n_permutations": 200,
    }
    seen: list[tuple[str, int, int]] = []
    got = evaluate_ray(models, split, chunk_users=97, progress=lambda *a: seen.append(a), **opts)
    want = evaluate_models(models, split, **opts)
    pd.testing.assert_frame_equal(got.per_user, want.per_user, check_exact=True)
    pd.testing.assert_frame_equal(got.summary, want.summary, check_exact=True)
    pd.testing.assert_frame_equal(got.comparisons, want.comparisons, check_exact=True)
    n = len(split.scored_users)
    assert [s for s in seen if s[0] == "als"][-1] == ("als", n, n)
    assert len(seen) == 2 * -(-n // 97)  # one report per chunk


def test_encoding_matches_single_process_and_fills_the_cache(
    ray_local: Any, ml_small: Any, tmp_path: Path
) -> None:
    """A tiny random BERT (mean pooling) over 300 MovieLens texts in 3 shards on 2 actors."""
    from abrec.embed.cache import text_keys
    from abrec.embed.encoder import TextEncoder
    from abrec.scale import encode_catalog_ray

    tiny_bert_dir = _tiny_bert()
    texts = [str(t) for t in ml_small.items.text[:300]]
    texts[5] = texts[17]  # a repeated text is encoded once and returned twice
    enc = TextEncoder(tiny_bert_dir(), cache_dir=tmp_path, show_progress=False, batch_size=16)
    got = encode_catalog_ray(texts, enc, shard_size=100, workers=2)
    want = TextEncoder(tiny_bert_dir(), use_cache=False, show_progress=False).encode(texts)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)  # float32 rounding only
    np.testing.assert_array_equal(got[5], got[17])
    cos = (got * want).sum(axis=1)
    assert cos.min() > 0.99999
    # the driver's cache now holds every text: a fresh encoder reads them back unchanged
    fresh = TextEncoder(tiny_bert_dir(), cache_dir=tmp_path, show_progress=False)
    assert fresh.cache is not None
    found, cached = fresh.cache.get(fresh.identity, text_keys(texts))
    assert found.all()
    assert np.array_equal(cached, got)


def test_offline_run_on_ray_matches_its_own_models_in_process(
    ray_local: Any, ml_small_dir: Path
) -> None:
    """`run(cfg, ray_address=...)` (what `abrec evaluate --ray` calls) evaluates on Ray; the
    same fitted models evaluated in this process give the same per-user table."""
    from abrec.offline.config import parse_config
    from abrec.offline.run import run

    cfg = parse_config(
        {
            "dataset": {"kind": "movielens", "path": str(ml_small_dir.parent)},
            "evaluation": {"ks": [10], "n_bootstrap": 200, "n_permutations": 200,
                           "diversity": False},
            "models": [
                {"name": "pop", "kind": "popularity"},
                {"name": "als", "kind": "als", "params": {"factors": 16, "iterations": 3}},
            ],
        }
    )  # fmt: skip
    out = run(cfg, write=False, quiet=True, ray_address="local")  # Ray is up: reused
    assert out.result.info["executor"] == "ray"
    ev = cfg.evaluation
    want = evaluate_models(
        out.models, out.split, ks=ev.ks, n_bootstrap=ev.n_bootstrap,
        n_permutations=ev.n_permutations, seed=cfg.seed, batch_size=ev.batch_size,
    )  # fmt: skip
    pd.testing.assert_frame_equal(out.result.per_user, want.per_user, check_exact=True)
    pd.testing.assert_frame_equal(out.result.summary, want.summary, check_exact=True)
