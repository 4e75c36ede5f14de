"""HTTP serving benchmark: abrec against a bare route, a minimal numpy-EASE route and Cornac.

Every server is its own process (see `serve_targets.py`); the load comes from `wrk`
(one thread, 16 connections by default, latency distribution from ``--latency``), a
separate C process that is not the bottleneck (its CPU share is printed). Runs are
interleaved: repetition 1 runs every target once, then repetition 2, and so on, so a
drift of the machine hits every target alike. Per target and run it records req/s,
p50 and p99 latency, non-2xx responses, and the server's CPU time per request (user +
system of the server processes and their children, from /proc via psutil, over the
run, divided by the requests completed) plus the same for PostgreSQL's processes. Before
every run PostgreSQL is checkpointed and left to go quiet (`settle_postgres`), so the
autovacuum and checkpoint work of one target's inserted rows does not land on the next.

Targets (all on MovieLens latest-small when ABREC_DATA is set, else a synthetic bundle):

- ``abrec-recommend-wN``: ``POST /v1/recommend`` k=10 on the real service with a
  PostgreSQL store, for units assigned to the treatment arm (EASE), so every request
  logs 10 exposures and answers only after they are committed; N worker processes.
- ``abrec-compact-recommend-wN``: the same service serving the compact EASE a deployment
  ships (`abrec.models.compact`: float16 storage, top-``--compact-top-k`` entries per row
  of B, 500 by default, whose NDCG@10 loss is not significant: bench_compact.py); Cornac
  has no pruned EASE, so this is abrec's deployment form against Cornac's only form.
- ``abrec-events-wN``: ``POST /v1/events`` with 10 events per request (type ``view`` of
  the same experiment and arm: validated, arm-checked against the sticky assignment,
  idempotent insert, answered after commit).
- ``bare-recommend`` / ``bare-events``: a bare FastAPI route returning the same JSON.
- ``numpy-recommend``: a minimal FastAPI route doing the same EASE math in numpy.
- ``cornac-recommend``: Cornac 3.0.1's own serving app (``cornac.serving.app``, Flask
  development server, ``GET /recommend?uid=..&k=10&remove_seen=true``) on a Cornac EASE
  (λ=500, no clipping) trained on the same interactions, run from its own virtualenv
  (``--cornac-python``). Skipped, with the reason printed, when that is not available.

    python benchmarks/bench_serve.py [--quick] [--seconds 20] [--reps 3] [--workers 1,2]

Needs ``wrk`` (Debian/Ubuntu: ``apt-get install -y wrk``) and PostgreSQL at ``--store-url``.
Cornac: ``python3 -m venv /tmp/cornac-venv && /tmp/cornac-venv/bin/pip install
cornac==3.0.1 flask``. Writes the table to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
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
WRK_HINT = "install it with `apt-get install -y wrk` (Debian/Ubuntu) or from github.com/wg/wrk"
CORNAC_HINT = (
    "create it with `python3 -m venv /tmp/cornac-venv && "
    "/tmp/cornac-venv/bin/pip install cornac==3.0.1 flask`"
)

LUA = r"""
local units = {%(units)s}
local n = #units
local i = 0
local mode = "%(mode)s"
local path = "%(path)s"
local tag = "%(tag)s"
local headers = {["Content-Type"] = "application/json"}
request = function()
  i = i + 1
  local u = units[(i %% n) + 1]
  if mode == "recommend" then
    return wrk.format("POST", path, headers,
      '{"unit_id":"' .. u .. '","experiment":"bench","k":10}')
  elseif mode == "cornac" then
    return wrk.format("GET", path .. "?uid=" .. u .. "&k=10&remove_seen=true")
  end
  local parts = {}
  for j = 0, 9 do
    parts[#parts + 1] = string.format(
      '{"event_id":"%%s-%%d-%%d","experiment":"bench","variant":"treatment","unit_id":"%%s",'
      .. '"type":"view","item_id":"%%d","position":%%d,"request_id":"%%s-%%d"}',
      tag, i, j, u, j, j, tag, i)
  end
  return wrk.format("POST", path, headers, '{"events":[' .. table.concat(parts, ",") .. ']}')
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,'
    .. '"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    """The servers' environment: this tree's `src` first, single-threaded BLAS (a
    request scores one row; idle BLAS threads spinning would only burn CPU)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


def cli_has_workers() -> bool:
    """Whether `abrec serve` takes `--workers` (then multi-worker runs use it)."""
    out = subprocess.run(
        [sys.executable, "-c", "from abrec.cli import app; app()", "serve", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    return "--workers" in out.stdout


@dataclass
class Server:
    """One benchmarked server: its processes on one port."""

    name: str
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: int = 1

    def pids(self) -> list[psutil.Process]:
        out = []
        for p in self.procs:
            try:
                root = psutil.Process(p.pid)
                out += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return out

    def cpu_s(self) -> float:
        """CPU seconds (user + system, reaped children included) of every process."""
        total = 0.0
        for p in self.pids():
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def start(
    name: str,
    cmds: list[list[str]],
    port: int,
    env: dict[str, str],
    probe: str,
    quiet: bool = False,
) -> Server:
    """Start the processes, wait until each listens and the probe answers 200."""
    srv = Server(name, port, workers=len(cmds))
    out = subprocess.DEVNULL if quiet else None
    for cmd in cmds:
        srv.procs.append(
            subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        )
    deadline = time.monotonic() + 300
    while True:
        dead = [p for p in srv.procs if p.poll() is not None]
        if dead:
            srv.stop()
            raise SystemExit(f"error: server {name} exited with code {dead[0].returncode}")
        listening = 0
        for p in srv.procs:
            try:
                conns = psutil.Process(p.pid).net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            listening += any(c.status == "LISTEN" and c.laddr.port == port for c in conns)
        if listening == len(srv.procs) and _probe(probe):
            return srv
        if time.monotonic() > deadline:
            srv.stop()
            raise SystemExit(f"error: server {name} did not start within 300 s")
        time.sleep(0.3)


def _probe(req: str) -> bool:
    method, url, *body = req.split(" ", 2)
    data = body[0].encode() if body else None
    r = urllib.request.Request(url, data=data, method=method)
    if data:
        r.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


# --------------------------------------------------------------------------- data
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
    if not (path / "bundle.json").is_file():
        t0 = time.perf_counter()
        models = {
            "popularity": Popularity().fit(inter, cat),
            "ease": EASE(lambda_=500.0).fit(inter, cat),
        }
        ModelBundle(models=models, user_ids=inter.user_ids, item_ids=inter.item_ids).save(path)
        print(f"bundle fitted in {time.perf_counter() - t0:.1f} s -> {path}")
    return path, what


def compact_bundle(dense: Path, top_k: int) -> Path:
    """The dense bundle with its EASE stored as float16 and pruned to `top_k` per row of B
    (fitted weights unchanged; written next to it once)."""
    from abrec.models.bundle import ModelBundle
    from abrec.models.compact import ItemWeights

    out = dense.parent / f"bundle_compact{top_k}"
    if not (out / "bundle.json").is_file():
        b = ModelBundle.load(dense)
        ease: Any = b.models["ease"]
        ease.config = ease.config.model_copy(
            update={"storage_dtype": "float16", "prune_top_k": top_k}
        )
        ease.weights = ItemWeights.compact(ease.weights.to_dense(), "float16", top_k)
        b.save(out)
    return out


def treatment_units(store_url: str, prefix: str, experiments: Path, users: list[str]) -> list[str]:
    """`users` assigned now (sticky, stored); those in the treatment arm (EASE)."""
    from abrec.experiment.registry import ExperimentRegistry
    from abrec.experiment.spec import load_specs
    from abrec.store import EventStore

    store = EventStore.from_url(store_url, table_prefix=prefix)
    try:
        store.create_schema()
        reg = ExperimentRegistry(store)
        for spec in load_specs(experiments):
            reg.upsert(spec)
        return [u for u in users if reg.assign("bench", u) == "treatment"]
    finally:
        store.dispose()


CORNAC_TRAIN = r"""
import sys, numpy as np
import cornac
from cornac.data import Dataset
from cornac.models import EASE
triples = [tuple(l.rstrip("\n").split("\t")) for l in open(sys.argv[1])]
ds = Dataset.build([(u, i, 1.0) for u, i in triples], seed=0)
model = EASE(lamb=500, posB=False, verbose=False, seed=0).fit(ds)
print(model.save(sys.argv[2], save_trainset=True))
"""


def cornac_model(python: str, bundle: Path, workdir: Path) -> tuple[Path | None, str]:
    """Train and save Cornac's EASE on the bundle's interactions into `workdir` (kept: a
    later run reuses it); (model file, why not)."""
    done = workdir / "cornac_model.path"
    if done.is_file() and Path(done.read_text().strip()).is_file():
        return Path(done.read_text().strip()), ""
    if not Path(python).is_file():
        return None, f"no Cornac virtualenv at {python}; {CORNAC_HINT}"
    check = subprocess.run(
        [python, "-c", "import cornac, flask; print(cornac.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0 or not check.stdout.startswith("3.0.1"):
        got = check.stdout.strip() or check.stderr.strip().splitlines()[-1:]
        return None, f"cornac==3.0.1 + flask not importable with {python} ({got}); {CORNAC_HINT}"
    from abrec.models.bundle import ModelBundle

    b = ModelBundle.load(bundle)
    train = b.models["ease"]._require_train().tocoo()  # type: ignore[attr-defined]
    triples = workdir / "cornac_train.tsv"
    with triples.open("w") as fh:
        for u, i in zip(train.row, train.col, strict=True):
            fh.write(f"{b.user_ids[u]}\t{b.item_ids[i]}\n")
    t0 = time.perf_counter()
    out = subprocess.run(
        [python, "-c", CORNAC_TRAIN, str(triples), str(workdir / "cornac_model")],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return None, f"Cornac EASE training failed: {out.stderr.strip().splitlines()[-1:]}"
    print(f"Cornac EASE trained in {time.perf_counter() - t0:.1f} s")
    model_file = Path(out.stdout.strip().splitlines()[-1]).resolve()
    done.write_text(str(model_file))
    return model_file, ""


# --------------------------------------------------------------------------- load
def pg_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process (0 for those we cannot read)."""
    total = 0.0
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("postgres", "postmaster"):
            try:
                t = p.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += t.user + t.system
    return total


def settle_postgres(store_url: str, quiet_share: float = 0.05, limit_s: float = 30.0) -> float:
    """Checkpoint and wait until PostgreSQL's processes use under `quiet_share` of a core
    (at most `limit_s`), so one target's background work (autovacuum of the rows it
    inserted, checkpoints) does not land on the next target's run; seconds waited."""
    import sqlalchemy as sa

    start = time.monotonic()
    engine = sa.create_engine(store_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CHECKPOINT"))
    except Exception as exc:  # not superuser: the wait below still applies
        print(f"  (no CHECKPOINT: {type(exc).__name__})")
    finally:
        engine.dispose()
    while time.monotonic() - start < limit_s:
        before = pg_cpu_s()
        time.sleep(0.5)
        if (pg_cpu_s() - before) / 0.5 < quiet_share:
            break
    return time.monotonic() - start


def run_wrk(
    srv: Server, path: str, mode: str, units: list[str], seconds: float, conns: int, tag: str
) -> dict[str, float]:
    """One wrk run against `srv`; its measurements."""
    lua = LUA % {
        "units": ",".join(json.dumps(u) for u in units),
        "mode": mode,
        "path": path,
        "tag": tag,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
    cmd = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        fh.name,
        f"http://127.0.0.1:{srv.port}{path}",
    ]
    cpu0, pg0 = srv.cpu_s(), pg_cpu_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, pg1 = srv.cpu_s(), pg_cpu_s()
    os.unlink(fh.name)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"error: wrk failed ({out.returncode}): {out.stderr.strip()}")
    w = json.loads(line.removeprefix("WRKJSON "))
    n = max(1, int(w["requests"]))
    wall = w["duration_us"] / 1e6
    wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {
        "requests": float(w["requests"]),
        "rps": w["requests"] / wall,
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "non_2xx": float(w["status"]),
        "socket_errors": float(w["connect"] + w["read"] + w["write"] + w["timeout"]),
        "cpu_ms_per_req": 1000 * (cpu1 - cpu0) / n,
        "pg_cpu_ms_per_req": 1000 * (pg1 - pg0) / n,
        "wrk_cpu_share": wrk_cpu / wall,
    }


@dataclass(frozen=True)
class Target:
    name: str
    server: str
    path: str
    mode: str


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median over repetitions of every measure (sums for the error counts)."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for k in ("requests", "non_2xx", "socket_errors"):
        out[k] = sum(r[k] for r in runs)
    return out


# --------------------------------------------------------------------------- main
def main() -> None:
    global SRC
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--quick", action="store_true", help="5 s runs, 1 repetition")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="abrec worker counts, e.g. 1,2")
    parser.add_argument("--store-url", default=PG_URL)
    parser.add_argument("--bundle", type=Path, default=Path("runs/bench_serve/bundle"))
    parser.add_argument("--cornac-python", default="/tmp/cornac-venv/bin/python")
    parser.add_argument(
        "--compact-top-k",
        type=int,
        default=500,
        help="also serve EASE pruned to this many entries per row (float16); 0: skip",
    )
    parser.add_argument("--only", default="", help="comma-separated target name prefixes")
    parser.add_argument(
        "--uvicorn",
        default="auto,auto",
        help="loop,http of the FastAPI targets started by serve_targets.py (e.g. asyncio,h11)",
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=HERE.parent / "src",
        help="abrec sources the servers import (A/B of code)",
    )
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run the service from these sources (e.g. an export of main) as base-*",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_serve.json"))
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.reps = 5.0, 1
    SRC = args.src.resolve()
    if shutil.which("wrk") is None:
        print(f"error: wrk is not installed; {WRK_HINT}", file=sys.stderr)
        raise SystemExit(2)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    sys.path.insert(0, str(SRC))
    from abrec.serve.services import database_problem

    problem = database_problem(args.store_url)
    if problem is not None:
        print(f"error: the store {args.store_url} is unreachable: {problem}", file=sys.stderr)
        raise SystemExit(2)

    bundle, what = build_bundle(args.bundle)
    users = [str(u) for u in np.load(bundle / "ids.npz", allow_pickle=True)["user_ids"]]
    env = _env()
    py = sys.executable
    loop, http = args.uvicorn.split(",")
    uv = ["--loop", loop, "--http", http]
    prefix = f"bench_{uuid.uuid4().hex[:8]}_"
    servers: dict[str, Server] = {}
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "experiments.toml").write_text(EXPERIMENTS)
        bundles = {"abrec": bundle}
        if args.compact_top_k > 0:
            bundles["abrec-compact"] = compact_bundle(bundle, args.compact_top_k)
        for label, path in bundles.items():
            (tmp / f"{label}.toml").write_text(
                f'store_url = "{args.store_url}"\ntable_prefix = "{prefix}"\n'
                f'bundle = "{path.resolve()}"\nexperiments = "{tmp / "experiments.toml"}"\n'
            )
        units = treatment_units(args.store_url, prefix, tmp / "experiments.toml", users)
        print(
            f"data: {what}; {len(units)} units in the treatment arm; wrk -t1 -c{args.connections}, "
            f"{args.seconds:g} s x {args.reps} interleaved repetitions"
        )
        cornac_file, cornac_why = cornac_model(args.cornac_python, bundle, bundle.parent)
        rec_body = json.dumps({"unit_id": units[0], "experiment": "bench", "k": 10})
        targets: list[Target] = []
        try:
            for kind in ("bare", "numpy"):
                port = free_port()
                cmd = [py, str(HERE / "serve_targets.py"), kind, "--port", str(port)]
                cmd += ["--bundle", str(bundle), *uv]
                probe = f"POST http://127.0.0.1:{port}/v1/recommend {rec_body}"
                servers[kind] = start(kind, [cmd], port, env, probe)
            targets += [
                Target("bare-recommend", "bare", "/v1/recommend", "recommend"),
                Target("numpy-recommend", "numpy", "/v1/recommend", "recommend"),
                Target("bare-events", "bare", "/v1/events", "events"),
            ]
            multi = cli_has_workers()
            variants = [(label, env, label) for label in bundles]
            if args.baseline_src is not None:  # the same service from other sources
                base_env = dict(env, PYTHONPATH=str(args.baseline_src.resolve()))
                variants.append(("base", base_env, "abrec"))
            for label, venv, conf in variants:
                config = str(tmp / f"{conf}.toml")
                for w in workers:
                    port = free_port()
                    probe = f"POST http://127.0.0.1:{port}/v1/recommend {rec_body}"
                    if multi and label != "base":
                        cli = [py, "-c", "from abrec.cli import app; app()", "serve"]
                        cli += ["--config", config, "--port", str(port)]
                        cmds = [[*cli, "--workers", str(w), "--log-level", "warning"]]
                    else:
                        one = [py, str(HERE / "serve_targets.py"), "abrec", "--port", str(port)]
                        cmds = [[*one, "--config", config, *uv]] * w
                    key = f"{label}-w{w}"
                    servers[key] = start(key, cmds, port, venv, probe)
                    targets.append(
                        Target(f"{label}-recommend-w{w}", key, "/v1/recommend", "recommend")
                    )
                    if label != "abrec-compact":  # the events route does not use the model
                        targets.append(Target(f"{label}-events-w{w}", key, "/v1/events", "events"))
            if cornac_file is not None:
                port = free_port()
                cenv = {
                    "PATH": os.environ.get("PATH", ""),
                    "MODEL_PATH": str(cornac_file),
                    "MODEL_CLASS": "cornac.models.EASE",
                    "HOME": str(tmp),
                    "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1",
                }
                cmd = [args.cornac_python, "-m", "flask", "--app", "cornac.serving.app", "run"]
                cmd += ["--port", str(port), "--no-debugger", "--no-reload"]
                probe = (
                    f"GET http://127.0.0.1:{port}/recommend?uid={units[0]}&k=10&remove_seen=true"
                )
                servers["cornac"] = start("cornac", [cmd], port, cenv, probe, quiet=True)
                targets.append(Target("cornac-recommend", "cornac", "/recommend", "cornac"))
            else:
                print(f"Cornac skipped: {cornac_why}")
            if args.only:
                keep = tuple(p.strip() for p in args.only.split(","))
                targets = [t for t in targets if t.name.startswith(keep)]
            for t in targets:  # warm-up: caches, pools, JIT-free but page faults
                run_wrk(servers[t.server], t.path, t.mode, units, 2, args.connections, "warm")
            for rep in range(args.reps):
                for t in targets:
                    tag = f"{uuid.uuid4().hex[:6]}r{rep}"
                    settle_postgres(args.store_url)
                    r = run_wrk(
                        servers[t.server], t.path, t.mode, units, args.seconds,
                        args.connections, tag,
                    )  # fmt: skip
                    results.setdefault(t.name, []).append(r)
                    print(
                        f"  rep {rep + 1} {t.name:22s} {r['rps']:8.0f} req/s  p50 "
                        f"{r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  CPU/req "
                        f"{r['cpu_ms_per_req']:5.2f} ms (+PG {r['pg_cpu_ms_per_req']:4.2f})  "
                        f"non-2xx {r['non_2xx']:.0f}",
                        flush=True,
                    )
        finally:
            for srv in servers.values():
                srv.stop()
            from abrec.store import EventStore

            store = EventStore.from_url(args.store_url, table_prefix=prefix)
            store.metadata.drop_all(store.engine)
            store.dispose()
    report(results, args, cornac_why, what)


def report(
    results: dict[str, list[dict[str, float]]], args: argparse.Namespace, cornac_why: str, what: str
) -> None:
    """Print the table and the issue's ratios; write both to `args.out`."""
    table = {name: summarise(runs) for name, runs in results.items()}
    print(
        f"\n{'server':24s} {'req/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'CPU/req ms':>10s} "
        f"{'PG CPU/req':>10s} {'wrk CPU':>7s} {'non-2xx':>7s}"
    )
    for name, s in table.items():
        print(
            f"{name:24s} {s['rps']:8.0f} {s['p50_ms']:7.1f} {s['p99_ms']:7.1f} "
            f"{s['cpu_ms_per_req']:10.2f} {s['pg_cpu_ms_per_req']:10.2f} "
            f"{s['wrk_cpu_share']:7.0%} {s['non_2xx']:7.0f}"
        )
    ratios: dict[str, float] = {}
    abrec = {
        n: s
        for n, s in table.items()
        if n.startswith(("abrec-recommend", "abrec-compact-recommend"))
    }
    best = max(abrec, key=lambda n: abrec[n]["rps"]) if abrec else None
    if best and "cornac-recommend" in table:
        for n, s in abrec.items():
            ratios[f"{n} / cornac throughput"] = s["rps"] / table["cornac-recommend"]["rps"]
    if "numpy-recommend" in table:
        for n, s in abrec.items():
            ratios[f"{n} / numpy CPU per request"] = (
                s["cpu_ms_per_req"] / table["numpy-recommend"]["cpu_ms_per_req"]
            )
    if "bare-events" in table:
        for n, s in table.items():
            if n.startswith("abrec-events"):
                ratios[f"{n} / bare-events throughput"] = s["rps"] / table["bare-events"]["rps"]
    for n, s in abrec.items():
        ratios[f"{n} p99 ms (target <= 25)"] = s["p99_ms"]
    if not ratios:
        print("(no ratios: a target is missing)")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    if cornac_why:
        print(f"Cornac: not run ({cornac_why})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "data": what,
                "seconds": args.seconds,
                "reps": args.reps,
                "connections": args.connections,
                "cpus": os.cpu_count(),
                "summary": table,
                "runs": results,
                "ratios": ratios,
                "cornac_skipped": cornac_why or None,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
