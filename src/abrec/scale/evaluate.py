"""Offline evaluation on Ray: each model's per-user metrics computed in user chunks by tasks.

Fitting, the bootstrap CIs and the paired tests stay in the driver (`evaluate_models`); the
ranking of every scored user and its metrics, the costly part, run as Ray tasks over ranges
of users. Every metric depends on one user's row only, so the per-user table (and hence the
summary and the comparisons) equals the single-process one exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from abrec.data.splits import ProtocolSplit
from abrec.errors import ConfigError
from abrec.evaluation.protocol import (
    ChunkTask,
    EvaluationResult,
    ProgressFn,
    UserChunk,
    evaluate_models,
    evaluate_users,
    merge_chunks,
)
from abrec.models.base import Recommender
from abrec.scale.session import cluster_cpus, default_chunk, even_ranges, require_ray


class RayChunkRunner:
    """A `ChunkRunner` that evaluates ranges of users as Ray tasks on the connected cluster.

    The shared targets are put in the object store once per evaluation and each model once;
    `chunk_users` users per task (default: about two tasks per cluster CPU, a multiple of the
    evaluation's batch size). Ray must already be initialised (`ray_session`).
    """

    def __init__(self, chunk_users: int | None = None) -> None:
        if chunk_users is not None and chunk_users < 1:
            raise ConfigError(f"chunk_users must be >= 1, got {chunk_users}")
        self.chunk_users = chunk_users
        self._task: tuple[ChunkTask, Any] | None = None

    def __call__(
        self, name: str, model: Recommender, task: ChunkTask, progress: ProgressFn | None
    ) -> UserChunk:
        ray = require_ray()
        if not ray.is_initialized():
            raise ConfigError("RayChunkRunner needs Ray initialised; use abrec.scale.ray_session")
        if self._task is None or self._task[0] is not task:
            self._task = (task, ray.put(task))
        task_ref = self._task[1]
        n = task.n_users
        size = self.chunk_users or default_chunk(n, cluster_cpus(ray), task.batch_size)
        remote = ray.remote(num_cpus=1)(evaluate_users)
        model_ref = ray.put(model)
        pending = {
            remote.remote(model_ref, task_ref, lo, hi): hi - lo for lo, hi in even_ranges(n, size)
        }
        chunks: list[UserChunk] = []
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            done += pending.pop(ready[0])
            chunks.append(ray.get(ready[0]))
            if progress is not None:
                progress(name, done, n)
        return merge_chunks(chunks, n)


def evaluate_ray(
    models: Mapping[str, Recommender],
    split: ProtocolSplit,
    *,
    chunk_users: int | None = None,
    address: str | None = None,
    **kwargs: Any,
) -> EvaluationResult:
    """`evaluate_models(models, split, **kwargs)` with per-user metrics computed on Ray.

    Args:
        chunk_users: scored users per Ray task (default: about two tasks per cluster CPU).
        address: Ray address (`ray_session`); ignored when Ray is already initialised.
    """
    from abrec.scale.session import ray_session

    with ray_session(address):
        return evaluate_models(models, split, runner=RayChunkRunner(chunk_users), **kwargs)
