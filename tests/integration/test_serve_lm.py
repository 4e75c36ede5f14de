"""A language-model recommender served over HTTP: the real `lm` model with the bundled MiniLM.

The bundle holds `EmbeddingSimilarity` (`build_model("lm")`, item embeddings from the bundled
all-MiniLM-L6-v2 over a small synthetic catalogue) in both arms of an experiment, so every
request is answered by the language model. The reference is the fitted model itself: its own
top-k for the user (seen items excluded), or its history scores for an anonymous unit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from pg_gate import PG_URL, require_postgres
from test_serve_support import Cooc, experiment_toml, start_service, unique_prefix, write_config

from abrec.data.types import Interactions, ItemCatalog
from abrec.models.base import Recommender, top_k
from abrec.models.bundle import ModelBundle
from abrec.models.registry import build_model
from abrec.serve.config import ServeConfig
from abrec.store import EventStore

TOKEN = "lm-admin-token"
GENRES = ["space opera", "courtroom drama", "cooking show", "horror", "football documentary"]
MOODS = ["a gentle", "a grim", "an uplifting", "a tense", "a comic", "an epic"]
N_USERS = 24


def catalogue() -> tuple[Interactions, ItemCatalog]:
    """30 items (5 genres x 6 moods); each user watches 5 items, mostly from one genre."""
    texts = [f"{mood} {genre} about {genre.split()[-1]} life" for genre in GENRES for mood in MOODS]
    n_items = len(texts)
    rng = np.random.default_rng(7)
    users, items = [], []
    for u in range(N_USERS):
        genre = u % len(GENRES)
        own = genre * len(MOODS) + rng.choice(len(MOODS), size=4, replace=False)
        other = rng.integers(0, n_items)
        for j in [*own, other]:
            users.append(u)
            items.append(int(j))
    inter = Interactions(
        user_idx=np.array(users),
        item_idx=np.array(items),
        user_ids=np.array([f"u{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"i{j}" for j in range(n_items)], dtype=object),
    )
    return inter, ItemCatalog(item_ids=inter.item_ids, text=np.array(texts))


@dataclass
class LMService:
    client: httpx.Client
    store: EventStore
    models: dict[str, Recommender]
    inter: Interactions


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Recommender]]:
    inter, cat = catalogue()
    models: dict[str, Recommender] = {
        "cooc": Cooc().fit(inter, cat),  # the service's fallback model
        "lm": build_model("lm").fit(inter, cat),
        "lm_plain": build_model("lm", half_life=None).fit(inter, cat),
    }
    path = tmp_path_factory.mktemp("lm_bundle") / "bundle"
    ModelBundle(models=models, user_ids=inter.user_ids, item_ids=inter.item_ids).save(path)
    return path, models


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def lm_service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fitted: tuple[Path, dict[str, Recommender]],
) -> Iterator[LMService]:
    bundle, models = fitted
    tmp = tmp_path_factory.mktemp(f"lm_{request.param}")
    if request.param == "postgres":
        require_postgres(PG_URL)
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'events.db'}"
    prefix = unique_prefix("lm")
    experiments = experiment_toml(
        "lm-exp", [("recency", 0.5, "lm"), ("plain", 0.5, "lm_plain")], status="running"
    )
    cfg = ServeConfig.from_toml(write_config(tmp, url, bundle, experiments, table_prefix=prefix))
    thread = start_service(cfg, TOKEN)
    store = EventStore.from_url(url, table_prefix=prefix)
    try:
        with httpx.Client(base_url=thread.url, timeout=60) as client:
            yield LMService(client, store, models, catalogue()[0])
    finally:
        thread.stop()
        if request.param == "postgres":
            store.metadata.drop_all(store.engine)
        store.dispose()


def test_served_lm_recommendations_are_the_models_top_k(lm_service: LMService) -> None:
    k = 6
    seen_models = set()
    for u in range(N_USERS):
        before = lm_service.store.count("lm-exp")
        r = lm_service.client.post(
            "/v1/recommend", json={"unit_id": f"u{u}", "experiment": "lm-exp", "k": k}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        name = {"recency": "lm", "plain": "lm_plain"}[body["variant"]]
        assert body["model"] == name
        seen_models.add(name)
        model = lm_service.models[name]
        items, scores = model.recommend(np.array([u]), k)  # the model's own top-k
        assert [it["item_id"] for it in body["items"]] == [f"i{j}" for j in items[0]]
        np.testing.assert_allclose([it["score"] for it in body["items"]], scores[0], rtol=1e-6)
        # seen items are never recommended, and every shown item is logged as an exposure
        assert not set(items[0]) & set(lm_service.inter.matrix[u].indices)
        assert lm_service.store.count("lm-exp") == before + k
    frame = lm_service.store.unit_frame("lm-exp")
    exposures = dict(zip(frame["unit_id"], frame["exposures"], strict=True))
    assert all(exposures[f"u{u}"] == k for u in range(N_USERS))
    assert seen_models == {"lm", "lm_plain"}  # both LM arms were served


def test_served_lm_scores_an_anonymous_history_with_the_embeddings(lm_service: LMService) -> None:
    history = ["i0", "i1", "i2"]  # three space-opera items
    r = lm_service.client.post(
        "/v1/recommend",
        json={"unit_id": "anon-1", "experiment": "lm-exp", "k": 4, "context": {"history": history}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    model = lm_service.models[body["model"]]
    row = model.score_history([np.array([0, 1, 2])])[0].copy()
    row[[0, 1, 2]] = -np.inf
    items, scores = top_k(row[None, :], 4)
    assert [it["item_id"] for it in body["items"]] == [f"i{j}" for j in items[0]]
    np.testing.assert_allclose([it["score"] for it in body["items"]], scores[0], rtol=1e-6)
    # the LM puts the other space-opera items (i3..i5) first
    assert {it["item_id"] for it in body["items"][:3]} == {"i3", "i4", "i5"}
