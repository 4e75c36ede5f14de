"""Chunked per-user evaluation (what `abrec.scale` runs on Ray), checked without Ray: any
tiling of the users into ranges gives the single-process per-user table exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_metrics_protocol import RandomScores, setup  # noqa: F401  (fixture)

from abrec.errors import ConfigError
from abrec.evaluation.protocol import (
    ChunkTask,
    ProgressFn,
    UserChunk,
    evaluate_models,
    evaluate_users,
    merge_chunks,
)
from abrec.models.base import Recommender


def _runner(edges: list[int]) -> Any:
    """A runner evaluating ranges [edges[i], edges[i+1]) in reverse order, then merging."""

    def run(name: str, model: Recommender, task: ChunkTask, progress: ProgressFn | None) -> Any:
        ranges = list(zip(edges, [*edges[1:], task.n_users], strict=True))
        chunks = [evaluate_users(model, task, lo, hi) for lo, hi in reversed(ranges)]
        return merge_chunks(chunks, task.n_users)

    return run


@pytest.mark.parametrize("edges", [[0], [0, 1], [0, 7, 8, 50], [0, 33, 34, 35]])
def test_any_tiling_gives_the_single_process_table(setup: Any, edges: list[int]) -> None:  # noqa: F811
    split, items = setup
    models = {
        "a": RandomScores(1).fit(split.train, items),
        "b": RandomScores(2).fit(split.train, items),
    }
    emb = np.random.default_rng(2).normal(size=(split.n_items, 6))
    opts: dict[str, Any] = {"ks": (3, 10), "item_embeddings": emb, "n_bootstrap": 100,
                            "n_permutations": 100, "batch_size": 16}  # fmt: skip
    want = evaluate_models(models, split, **opts)
    got = evaluate_models(models, split, runner=_runner(edges), **opts)
    pd.testing.assert_frame_equal(got.per_user, want.per_user, check_exact=True)
    pd.testing.assert_frame_equal(got.summary, want.summary, check_exact=True)
    pd.testing.assert_frame_equal(got.comparisons, want.comparisons, check_exact=True)


def _chunk(lo: int, hi: int) -> UserChunk:
    z = np.zeros(hi - lo)
    return UserChunk(lo, hi, {"m": z}, {"m": z[:0]}, np.zeros((hi - lo, 2), dtype=np.int64))


def test_merge_rejects_gaps_overlaps_and_short_tilings() -> None:
    assert merge_chunks([_chunk(3, 5), _chunk(0, 3)], 5).per_all["m"].shape == (5,)
    for bad in ([_chunk(0, 2), _chunk(3, 5)], [_chunk(0, 3), _chunk(2, 5)], [_chunk(0, 4)]):
        with pytest.raises(ConfigError, match="tile"):
            merge_chunks(bad, 5)


def test_a_range_outside_the_users_is_refused(setup: Any) -> None:  # noqa: F811
    split, items = setup
    seen: list[ChunkTask] = []

    def grab(name: str, model: Recommender, task: ChunkTask, progress: ProgressFn | None) -> Any:
        seen.append(task)
        return evaluate_users(model, task, 0, task.n_users)

    model = RandomScores(1).fit(split.train, items)
    evaluate_models({"a": model}, split, ks=(5,), n_bootstrap=100, n_permutations=100, runner=grab)
    with pytest.raises(ConfigError, match="outside"):
        evaluate_users(model, seen[0], 0, seen[0].n_users + 1)
