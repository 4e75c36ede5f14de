"""Shared helpers for the service tests: a small real model bundle and service configs.

The bundle is fitted on seeded synthetic interactions. It holds the project's
`popularity` and `ease` models, and `Cooc`, a small
item co-occurrence recommender defined here that also scores anonymous users
from their item history (`_score_history`), so the history path is exercised.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import scipy.sparse as sp
from pg_gate import PG_URL, require_postgres
from pydantic import SecretStr

from abrec.data.types import Interactions, ItemCatalog
from abrec.models.base import Recommender
from abrec.models.bundle import ModelBundle
from abrec.models.registry import build_model
from abrec.serve.config import ServeConfig
from abrec.serve.runner import ServiceThread
from abrec.store import EventStore

N_USERS = 60
N_ITEMS = 40
HERE = Path(__file__).resolve().parent


class Cooc(Recommender):
    """Item co-occurrence scores: user row times the item-item co-count matrix (zero diagonal)."""

    name = "cooc"

    def __init__(self) -> None:
        super().__init__()
        self.sim: np.ndarray | None = None

    def _fit(self, train: Interactions, items: ItemCatalog) -> None:
        x = train.matrix
        sim = (x.T @ x).toarray().astype(np.float32)
        np.fill_diagonal(sim, 0.0)
        self.sim = sim

    def _score_known(self, users: np.ndarray) -> np.ndarray:
        assert self.sim is not None and self._train is not None
        return np.asarray(self._train[users] @ self.sim, dtype=np.float32)

    def _score_history(self, X: sp.csr_matrix) -> np.ndarray:
        """Scores for anonymous users from their binary item-history rows."""
        assert self.sim is not None
        return np.asarray(X @ self.sim, dtype=np.float32)

    def _state(self) -> dict[str, Any]:
        return {"sim": self.sim}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.sim = state["sim"]


def synthetic(seed: int = 0) -> tuple[Interactions, ItemCatalog]:
    """Seeded interactions with a skewed item popularity (users u0.., items i0..)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    p /= p.sum()
    users = np.repeat(np.arange(N_USERS), 6)
    items = rng.choice(N_ITEMS, size=len(users), p=p)
    inter = Interactions(
        user_idx=users,
        item_idx=items,
        user_ids=np.array([f"u{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"i{j}" for j in range(N_ITEMS)], dtype=object),
    )
    cat = ItemCatalog(item_ids=inter.item_ids, text=np.array([f"item {j}" for j in range(N_ITEMS)]))
    return inter, cat


def build_bundle(path: Path, seed: int = 0) -> tuple[Path, Interactions]:
    """Fit and save the test bundle under `path` (models: cooc, cooc_b, popularity, ease),
    on the synthetic interactions of `seed` (the ids are the same for every seed)."""
    inter, cat = synthetic(seed)
    models: dict[str, Recommender] = {
        "cooc": Cooc().fit(inter, cat),
        "cooc_b": Cooc().fit(inter, cat),
        "popularity": build_model("popularity").fit(inter, cat),
        "ease": build_model("ease", lambda_=10.0).fit(inter, cat),
    }
    ModelBundle(models=models, user_ids=inter.user_ids, item_ids=inter.item_ids).save(path)
    return path, inter


def experiment_toml(
    exp_id: str, variants: list[tuple[str, float, str]], **fields: str | list[str]
) -> str:
    """One `[[experiment]]` TOML table; variants are (name, weight, model)."""
    lines = ["[[experiment]]", f"id = {json.dumps(exp_id)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    lines.append("variants = [")
    lines += [
        f"  {{ name = {json.dumps(n)}, weight = {w}, model = {json.dumps(m)} }},"
        for n, w, m in variants
    ]
    return "\n".join([*lines, "]", ""])


EXPERIMENTS_TOML = (
    experiment_toml(
        "exp1",
        [("control", 0.5, "cooc"), ("treatment", 0.5, "cooc_b")],
        status="running",
        primary_metric="ctr",
        guardrails=["exposures_per_unit"],
    )
    + "\n"
    + experiment_toml("draft1", [("a", 1, "cooc"), ("b", 1, "cooc_b")])
)


def write_config(
    tmp: Path, store_url: str, bundle: Path, experiments: str = EXPERIMENTS_TOML, **extra: Any
) -> Path:
    """Write serve.toml + experiments.toml under `tmp`; returns the serve.toml path."""
    (tmp / "experiments.toml").write_text(experiments)
    lines = [
        f'store_url = "{store_url}"',
        f'bundle = "{bundle}"',
        'experiments = "experiments.toml"',
        'fallback_model = "cooc"',
        "max_k = 20",
    ]
    lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in extra.items()]
    lines += ["[batch]", "max_batch = 200", "max_delay_s = 0.002"]
    path = tmp / "serve.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_service(config: ServeConfig, admin_token: str) -> ServiceThread:
    """Start a `ServiceThread` whose admin routes accept `admin_token`."""
    return ServiceThread(config.model_copy(update={"admin_token": SecretStr(admin_token)})).start()


def spawn_until_ready(
    cmd: list[str], env: dict[str, str], port: int, log: Path, timeout_s: float = 120.0
) -> subprocess.Popen[bytes]:
    """Run `cmd` (an `abrec serve` command line) with its output appended to `log`, and
    return once `/readyz` on `port` answers 200 (AssertionError with the log otherwise)."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not become ready:\n{log.read_text()}")


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unique_prefix(tag: str) -> str:
    """A table prefix unique to this test run, so PostgreSQL runs never see old rows."""
    return f"t{tag}_{uuid.uuid4().hex[:10]}_"


@dataclass
class LiveService:
    """A running service on one backend, a client for it and its store."""

    client: httpx.Client
    store: EventStore
    thread: ServiceThread


@contextmanager
def live_service(
    backend: str, tmp: Path, token: str, tag: str, *, read_token: str | None = None, **extra: Any
) -> Iterator[LiveService]:
    """Serve the test bundle on `backend` ("sqlite" or "postgres", tables unique to this run)
    with admin `token` (and `read_token`); `extra` are service config keys. PostgreSQL tables
    are dropped afterwards."""
    bundle, _ = build_bundle(tmp / "bundle")
    prefix = unique_prefix(tag)
    if backend == "postgres":
        require_postgres()
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'events.db'}"
    config = ServeConfig.from_toml(write_config(tmp, url, bundle, table_prefix=prefix, **extra))
    if read_token is not None:
        config = config.model_copy(update={"read_token": SecretStr(read_token)})
    thread = start_service(config, token)
    store = EventStore.from_url(url, table_prefix=prefix)
    try:
        with httpx.Client(base_url=thread.url, timeout=30) as client:
            yield LiveService(client, store, thread)
    finally:
        thread.stop()
        if backend == "postgres":
            store.metadata.drop_all(store.engine)
        store.dispose()


def served_fields(
    client: httpx.Client, unit: str, exp: str = "exp1", k: int = 1
) -> list[dict[str, object]]:
    """Recommend `k` items to `unit` in `exp`; the event fields that reference each served item
    (experiment, unit, variant, item, position, request id)."""
    r = client.post("/v1/recommend", json={"unit_id": unit, "experiment": exp, "k": k})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["variant"] is not None and len(body["items"]) == k
    return [
        {
            "experiment": exp,
            "unit_id": unit,
            "variant": body["variant"],
            "item_id": it["item_id"],
            "position": it["position"],
            "request_id": body["request_id"],
        }
        for it in body["items"]
    ]
