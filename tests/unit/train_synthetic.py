"""A tiny synthetic catalogue and rating history for the trainer's tests (fast on 2 cores).

40 items in 4 themes; each of 16 users likes (rating 5) items of one theme and dislikes
(rating 2) a few others; timestamps increase per user. Protocol split: temporal 80/20.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from abrec.data import Interactions, ItemCatalog, ProtocolSplit, protocol_split, temporal_user_split

THEMES = {
    "space": ("Sci-Fi", "space, robots, aliens"),
    "romance": ("Romance", "love, wedding, paris"),
    "horror": ("Horror", "ghosts, haunted house, blood"),
    "cartoon": ("Animation", "talking animals, family, songs"),
}
N_PER_THEME = 10
N_USERS = 16


def catalog() -> ItemCatalog:
    """40 items with 'Title. Genres: G. Tags: t.' texts and a `title` feature."""
    titles, texts = [], []
    for theme, (genre, tags) in THEMES.items():
        for k in range(N_PER_THEME):
            title = f"{theme.title()} Story {k + 1}"
            titles.append(title)
            texts.append(f"{title}. Genres: {genre}. Tags: {tags}.")
    ids = np.arange(100, 100 + len(titles), dtype=np.int64)
    return ItemCatalog(
        item_ids=ids,
        text=np.asarray(texts, dtype=object),
        features=pd.DataFrame({"title": titles}),
    )


def interactions(seed: int = 0) -> Interactions:
    """Each user: 12 liked items of their theme, 3 disliked of others, increasing timestamps."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, float, int]] = []
    n_items = N_PER_THEME * len(THEMES)
    for u in range(N_USERS):
        theme = u % len(THEMES)
        own = theme * N_PER_THEME + rng.permutation(N_PER_THEME)
        other = rng.choice(np.setdiff1d(np.arange(n_items), own), size=3, replace=False)
        events = [(int(i), 5.0) for i in own] + [(int(i), 2.0) for i in other]
        order = rng.permutation(len(events))
        for t, j in enumerate(order):
            rows.append((u, events[j][0], events[j][1], 1_000_000 + 1000 * u + 10 * t))
    u, i, r, ts = map(np.asarray, zip(*rows, strict=True))
    return Interactions(
        user_idx=u.astype(np.int64),
        item_idx=i.astype(np.int64),
        user_ids=np.arange(1, N_USERS + 1, dtype=np.int64),
        item_ids=catalog().item_ids,
        ratings=r.astype(np.float32),
        timestamps=ts.astype(np.int64),
    )


def split() -> ProtocolSplit:
    """Temporal 80/20 split of `interactions()` under the name 'temporal'."""
    train, test = temporal_user_split(interactions(), 0.2)
    return protocol_split(train, test, name="temporal")


def config(output_dir: Path, **overrides: Any) -> Any:
    """A fast TrainConfig: batch 8, 2 epochs, 4 pairs per user, 20 negatives, no warm-up."""
    from abrec.train import TrainConfig

    base: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 1e-4,
        "warmup_ratio": 0.0,
        "max_examples_per_user": 4,
        "n_negatives": 20,
        "val_fraction": 0.2,
        "max_seq_length": 32,
        "patience": None,
        "seed": 7,
        "device": "cpu",
        "output_dir": str(output_dir),
    }
    base.update(overrides)
    return TrainConfig(**base)


@contextmanager
def recorded_grad_norms() -> Iterator[list[float]]:
    """The total gradient norm at every optimiser step taken inside the block (after any
    clipping: the hook runs just before `optimizer.step`)."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    norms: list[float] = []

    def before_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        yield norms
    finally:
        handle.remove()
