"""Load test of the HTTP service over loopback, against a bare FastAPI route as baseline.

The service runs with uvicorn (one worker, in a background thread of this process);
a SEPARATE load-generating process (multiprocessing, spawn) sends requests with an
asyncio httpx client at fixed concurrency, bounded by a request count and a time
limit. Measured for `POST /v1/recommend` (k=10; EASE vs popularity experiment on
MovieLens when ABREC_DATA is set, else a synthetic bundle) and `POST /v1/events`
(batches of 10 events) on SQLite and on PostgreSQL (when reachable). The baseline
is a bare FastAPI app with the same routes returning a constant, served by the same
uvicorn config. Prints `name: ours X, baseline Y, ratio R` with ratio = ours / baseline.

    .venv/bin/python benchmarks/bench_serve.py [--requests 3000] [--seconds 12] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
EXPERIMENTS = """
[[experiment]]
id = "bench"
status = "running"
variants = [
  { name = "control", weight = 0.5, model = "popularity" },
  { name = "treatment", weight = 0.5, model = "ease" },
]
"""


# --------------------------------------------------------------------------- load generator
def _load_worker(
    url: str,
    route: str,
    n_requests: int,
    max_seconds: float,
    concurrency: int,
    unit_ids: list[str],
    seed: int,
    out: Any,
    variants: dict[str, str] | None = None,
    round_tag: str = "r0",
) -> None:
    """Runs in its own process: fire requests, report latencies (s), errors and wall time.

    A minimal HTTP/1.1 keep-alive client on asyncio streams (one connection per virtual
    client), so the load generator itself is cheap compared with the server.
    """
    import json
    from urllib.parse import urlsplit

    rng = np.random.default_rng(seed)
    units = [unit_ids[i] for i in rng.integers(0, len(unit_ids), n_requests)]
    run_tag = uuid.uuid4().hex[:8]
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80

    def body(i: int) -> dict[str, Any]:
        if route == "/v1/recommend":
            return {"unit_id": units[i], "experiment": "bench", "k": 10}
        return {
            "events": [
                {
                    "event_id": f"{run_tag}-{i}-{j}",
                    "experiment": "bench",
                    # a click references an exposure of its unit, variant and item
                    # (`expose_all` stored them as /v1/recommend would)
                    "variant": variants[units[i]]
                    if variants
                    else ("control" if i % 2 else "treatment"),
                    "unit_id": units[i],
                    "type": "click",
                    "item_id": str(j),
                    "position": j,
                    "request_id": f"{round_tag}-{i}",
                }
                for j in range(10)
            ]
        }

    def request(i: int) -> bytes:
        payload = json.dumps(body(i)).encode()
        head = (
            f"POST {route} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload

    async def roundtrip(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
    ) -> int:
        writer.write(data)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return status

    async def main() -> tuple[list[float], int, float]:
        latencies: list[float] = []
        errors = 0
        next_i = 0
        deadline = time.perf_counter() + max_seconds

        async def one_client() -> None:
            nonlocal next_i, errors
            reader, writer = await asyncio.open_connection(host, port)
            try:
                while next_i < n_requests and time.perf_counter() < deadline:
                    i = next_i
                    next_i += 1
                    data = request(i)
                    t0 = time.perf_counter()
                    try:
                        ok = await roundtrip(reader, writer, data) == 200
                    except (OSError, asyncio.IncompleteReadError, ValueError):
                        ok = False
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1
            finally:
                writer.close()

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start

    lat, errors, wall = asyncio.run(main())
    out.put((lat, errors, wall))


def drive(
    url: str,
    route: str,
    args: argparse.Namespace,
    unit_ids: list[str],
    seed: int,
    variants: dict[str, str] | None = None,
) -> dict[str, float]:
    """Warm up, then run the load generator in a separate process; summarise its results."""
    ctx = mp.get_context("spawn")
    results = []
    for r, (n, secs) in enumerate(rounds(args)):
        q = ctx.Queue()
        p = ctx.Process(
            target=_load_worker,
            args=(url, route, n, secs, args.concurrency, unit_ids, seed, q, variants, f"r{r}"),
        )
        p.start()
        results.append(q.get(timeout=secs + 120))
        p.join(timeout=30)
    lat, errors, wall = results[-1]
    a = np.asarray(lat) * 1000.0
    return {
        "n": float(len(a)),
        "errors": float(errors),
        "rps": len(a) / wall if wall > 0 else float("nan"),
        "p50": float(np.percentile(a, 50)) if len(a) else float("nan"),
        "p99": float(np.percentile(a, 99)) if len(a) else float("nan"),
    }


# --------------------------------------------------------------------------- apps
def bare_app() -> Any:
    """Baseline: the same routes on a bare FastAPI app, returning a constant."""
    from fastapi import FastAPI

    app = FastAPI()
    const = {"ok": True}

    @app.post("/v1/recommend")
    async def recommend() -> dict[str, bool]:
        return const

    @app.post("/v1/events")
    async def events() -> dict[str, bool]:
        return const

    return app


def build_bundle(path: Path) -> tuple[Path, str]:
    """MovieLens (popularity + EASE λ=500 on all ratings) when ABREC_DATA is set, else synthetic."""
    from abrec.models.bundle import ModelBundle
    from abrec.models.ease import EASE
    from abrec.models.popularity import Popularity

    data = os.environ.get("ABREC_DATA")
    if data and (Path(data) / "ml-latest-small" / "ratings.csv").is_file():
        from abrec.data.movielens import movielens_dataset

        inter, cat = movielens_dataset()
        what = "MovieLens latest-small (610 users x 9,742 items), EASE vs popularity"
    else:
        from abrec.data.types import Interactions, ItemCatalog

        rng = np.random.default_rng(0)
        n_users, n_items = 2000, 3000
        p = 1.0 / np.arange(1, n_items + 1)
        p /= p.sum()
        users = np.repeat(np.arange(n_users), 30)
        inter = Interactions(
            user_idx=users,
            item_idx=rng.choice(n_items, len(users), p=p),
            user_ids=np.array([f"u{i}" for i in range(n_users)], dtype=object),
            item_ids=np.array([f"i{j}" for j in range(n_items)], dtype=object),
        )
        cat = ItemCatalog(inter.item_ids, np.array([f"item {j}" for j in range(n_items)]))
        what = "synthetic (2,000 users x 3,000 items), EASE vs popularity"
    marker = path / "bundle.json"
    if not marker.is_file():
        t0 = time.perf_counter()
        models = {"popularity": Popularity().fit(inter, cat), "ease": EASE(500.0).fit(inter, cat)}
        ModelBundle(models=models, user_ids=inter.user_ids, item_ids=inter.item_ids).save(path)
        print(f"bundle fitted in {time.perf_counter() - t0:.1f} s -> {path}")
    return path, what


def rounds(args: argparse.Namespace) -> list[tuple[int, float]]:
    """(requests, seconds) of the warm-up and the measured round."""
    return [(min(200, args.requests), 5.0), (args.requests, args.seconds)]


def expose_all(
    url: str, prefix: str, units: list[str], args: argparse.Namespace, seed: int
) -> dict[str, str]:
    """Each unit's (sticky, stored) variant, as the service assigns, and the exposures the
    event load's clicks reference (request ``r{round}-{i}``, items 0..9), stored directly."""
    from abrec.experiment.registry import ExperimentRegistry
    from abrec.store import Event, EventStore

    store = EventStore.from_url(url, table_prefix=prefix)
    try:
        reg = ExperimentRegistry(store)
        got = {u: reg.assign("bench", u) for u in units}
        variants = {u: v for u, v in got.items() if v is not None}
        for r, (n, _) in enumerate(rounds(args)):
            rng = np.random.default_rng(seed)  # the load worker's draw of units
            drawn = [units[i] for i in rng.integers(0, len(units), n)]
            store.append(
                [
                    Event(
                        event_id=f"bench-exp-r{r}-{i}-{j}",
                        experiment="bench",
                        variant=variants[u],
                        unit_id=u,
                        type="exposure",
                        item_id=str(j),
                        position=j,
                        request_id=f"r{r}-{i}",
                    )
                    for i, u in enumerate(drawn)
                    if u in variants
                    for j in range(10)
                ]
            )
    finally:
        store.dispose()
    return variants


def fmt(name: str, ours: float, base: float, unit: str) -> str:
    return f"{name}: ours {ours:.1f} {unit}, baseline {base:.1f} {unit}, ratio {ours / base:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per measurement")
    parser.add_argument("--seconds", type=float, default=12.0, help="time limit per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bundle", type=Path, default=Path("runs/bench_serve/bundle"))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    from abrec.serve.config import BatchConfig, ServeConfig
    from abrec.serve.runner import ServiceThread, database_problem
    from abrec.store import EventStore

    bundle, what = build_bundle(args.bundle)
    ids = np.load(bundle / "ids.npz", allow_pickle=True)
    units = [str(u) for u in ids["user_ids"]] + [
        f"new-{i}" for i in range(len(ids["user_ids"]) // 10)
    ]
    print(
        f"data: {what}; concurrency {args.concurrency}, up to {args.requests} requests or "
        f"{args.seconds:.0f} s per measurement; load from a separate process"
    )

    with ServiceThread(bare_app()) as bare:
        base = {r: drive(bare.url, r, args, units, 1) for r in ("/v1/recommend", "/v1/events")}

    backends = ["sqlite"] + ([] if args.no_postgres or database_problem(PG_URL) else ["postgres"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "experiments.toml").write_text(EXPERIMENTS)
        for backend in backends:
            prefix = f"bench_{uuid.uuid4().hex[:8]}_"
            url = PG_URL if backend == "postgres" else f"sqlite:///{tmp}/bench.db"
            cfg = ServeConfig(
                store_url=url,
                bundle=bundle,
                experiments=Path(tmp) / "experiments.toml",
                table_prefix=prefix,
                batch=BatchConfig(max_batch=500, max_delay_s=0.005),
            )
            try:
                with ServiceThread(cfg) as svc:
                    route = "/v1/recommend"
                    rows.append((backend, route, drive(svc.url, route, args, units, 2)))
                    variants = expose_all(url, prefix, units, args, 2)
                    route = "/v1/events"
                    rows.append((backend, route, drive(svc.url, route, args, units, 2, variants)))
            finally:
                if backend == "postgres":
                    store = EventStore.from_url(url, table_prefix=prefix)
                    store.metadata.drop_all(store.engine)
                    store.dispose()

    for backend, route, ours in rows:
        b = base[route]
        tag = f"{route}[{backend}]"
        print(fmt(f"{tag} throughput", ours["rps"], b["rps"], "req/s"))
        print(fmt(f"{tag} p50 latency", ours["p50"], b["p50"], "ms"))
        print(fmt(f"{tag} p99 latency", ours["p99"], b["p99"], "ms"))
        print(f"{tag} requests: {ours['n']:.0f} ok, {ours['errors']:.0f} errors")


if __name__ == "__main__":
    main()
