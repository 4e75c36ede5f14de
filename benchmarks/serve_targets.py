"""The servers `bench_serve.py` compares, each started as its own process.

    python benchmarks/serve_targets.py bare   --port P [--bundle DIR]
    python benchmarks/serve_targets.py numpy  --port P --bundle DIR
    python benchmarks/serve_targets.py abrec  --port P --config serve.toml

- ``bare``: a FastAPI app whose ``POST /v1/recommend`` and ``POST /v1/events`` return a
  constant JSON body shaped like abrec's replies (the framework's floor).
- ``numpy``: a minimal FastAPI route doing the same EASE math as abrec in plain numpy
  (user row of the training matrix times B, seen items masked, top-k by argpartition),
  no store and no logging.
- ``abrec``: the real service (`abrec.serve.app.create_app`) with the same uvicorn
  settings as `abrec serve`.

Every target binds with ``SO_REUSEPORT``, so the benchmark can start several processes on
one port (one per worker); the kernel spreads connections over them. uvicorn picks uvloop
and httptools when they are installed (``loop="auto"``, ``http="auto"``), as `abrec serve`.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel


def recommend_reply(item_ids: list[str], scores: list[float]) -> dict[str, Any]:
    """A body shaped like abrec's `RecommendResponse` (for the bare route)."""
    return {
        "request_id": "0" * 32,
        "experiment": "bench",
        "variant": "treatment",
        "model": "ease",
        "items": [
            {"item_id": i, "position": p, "score": s, "source": None}
            for p, (i, s) in enumerate(zip(item_ids, scores, strict=True))
        ],
    }


class Body(BaseModel):
    """The numpy route's request (the fields of abrec's `RecommendRequest` it uses)."""

    unit_id: str
    experiment: str
    k: int = 10


EVENTS_REPLY = {"accepted": 10, "inserted": 10, "rejected": 0, "errors": []}


def bare_app() -> Any:
    """Constant replies shaped like abrec's, from a bare FastAPI app."""
    from fastapi import FastAPI

    app = FastAPI()
    rec = recommend_reply([str(1000 + j) for j in range(10)], [0.5 - 0.01 * j for j in range(10)])

    @app.post("/v1/recommend")
    async def recommend() -> dict[str, Any]:
        return rec

    @app.post("/v1/events")
    async def events() -> dict[str, Any]:
        return EVENTS_REPLY

    return app


def numpy_app(bundle: Path) -> Any:
    """EASE top-k in plain numpy behind one FastAPI route (no store, no logging)."""
    from fastapi import FastAPI

    from abrec.models.bundle import ModelBundle

    b = ModelBundle.load(bundle)
    model: Any = b.models["ease"]
    train = model._require_train().tocsr()
    cols = np.asarray(model._items)  # columns of B: items seen in training
    B = np.asarray(model._B)
    item_ids = [str(i) for i in b.item_ids[cols]]
    user_index = {str(u): i for i, u in enumerate(b.user_ids)}
    col_of = np.full(train.shape[1], -1, dtype=np.int64)
    col_of[cols] = np.arange(len(cols))

    app = FastAPI()

    @app.post("/v1/recommend")
    async def recommend(body: Body) -> dict[str, Any]:
        u = user_index[body.unit_id]
        lo, hi = train.indptr[u], train.indptr[u + 1]
        seen = col_of[train.indices[lo:hi]]
        known = seen >= 0
        seen = seen[known]
        scores = train.data[lo:hi][known] @ B[seen]
        scores[seen] = -np.inf
        top = np.argpartition(-scores, body.k)[: body.k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return recommend_reply([item_ids[j] for j in top], [float(scores[j]) for j in top])

    return app


def abrec_app(config: Path) -> Any:
    from abrec.serve.app import create_app
    from abrec.serve.config import ServeConfig

    return create_app(ServeConfig.from_toml(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["bare", "numpy", "abrec"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--loop", default="auto", help="uvicorn event loop (auto, asyncio, uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn HTTP parser (auto, h11, httptools)")
    args = parser.parse_args()
    import uvicorn

    if args.kind == "bare":
        app = bare_app()
    elif args.kind == "numpy":
        app = numpy_app(args.bundle)
    else:
        app = abrec_app(args.config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", backlog=2048)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
