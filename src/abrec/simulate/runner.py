"""Drive the real HTTP service with simulated users: recommend, click, send events.

Each simulated user has one or more sessions. Sessions of all users are placed on
a common (seeded) timeline and executed in that order by a small thread pool;
sessions of the same user never overlap and always run in their own order, and
every random draw is seeded by (seed, unit, session), so a run is reproducible
whatever the thread timing. One session = `POST /v1/recommend` (the service logs
the exposures), clicks drawn from the `ClickModel`, and click/conversion events
queued and sent in batches to `POST /v1/events` with unique event ids. On a
user's first session the pre-experiment covariate is sent as a `covariate` event.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from abrec.errors import AbrecError
from abrec.simulate.click_model import ClickModel
from abrec.simulate.population import SimUser


class SimulationError(AbrecError, RuntimeError):
    """The simulated traffic could not be delivered to the service."""


class SimulationConfig(BaseModel):
    """Traffic volume, sessions, click model and concurrency of a simulated experiment."""

    model_config = ConfigDict(extra="forbid")

    experiment: str
    n_users: int | None = Field(default=None, ge=1, description="users to draw; None = all")
    sessions_mean: float = Field(
        default=4.0, ge=1.0, description="mean sessions per user (1 + Poisson)"
    )
    max_sessions: int = Field(default=12, ge=1)
    k: int = Field(default=10, ge=1, le=1000)
    concurrency: int = Field(default=6, ge=1, le=64)
    event_batch: int = Field(default=250, ge=1, le=10_000)
    seed: int = 0
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0)
    send_history: bool = Field(
        default=True, description="send items clicked in earlier sessions as context.history"
    )
    click_model: ClickModel = Field(default_factory=lambda: ClickModel())


@dataclass(frozen=True)
class SimulationProgress:
    """Snapshot of what the simulator has done so far."""

    sessions_planned: int
    sessions_done: int
    units_seen: int
    exposures: int
    clicks: int
    conversions: int
    events_sent: int
    events_inserted: int
    unassigned_sessions: int
    elapsed_s: float
    stopped_early: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def session_plan(
    users: list[SimUser], *, sessions_mean: float, max_sessions: int, seed: int
) -> list[tuple[int, int]]:
    """Timeline of (user index, session number) pairs: seeded, per-user order preserved.

    Each user has `1 + Poisson(sessions_mean - 1)` sessions (capped) at sorted
    uniform times on [0, 1), so new users keep arriving while earlier ones return.
    """
    rng = np.random.default_rng([seed, 0x5E55])
    n = len(users)
    counts = np.minimum(1 + rng.poisson(sessions_mean - 1.0, size=n), max_sessions)
    owner = np.repeat(np.arange(n), counts)
    times = rng.random(len(owner))
    order = np.lexsort((times, owner))  # times sorted within each user
    times = times[order]
    first = np.r_[0, np.cumsum(counts)[:-1]]
    session_no = np.arange(len(owner)) - np.repeat(first, counts)
    timeline = np.lexsort((session_no, owner, times))
    return [(int(owner[i]), int(session_no[i])) for i in timeline]


class Simulator:
    """Runs simulated users against a service at `base_url` (thread pool, httpx, loopback)."""

    def __init__(
        self,
        base_url: str,
        users: list[SimUser],
        config: SimulationConfig,
        *,
        on_session: Callable[[SimulationProgress], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not users:
            raise SimulationError("no users to simulate")
        self.base_url = base_url.rstrip("/")
        self.users = users
        self.config = config
        self.on_session = on_session
        self._transport = transport
        self.plan = session_plan(
            users,
            sessions_mean=config.sessions_mean,
            max_sessions=config.max_sessions,
            seed=config.seed,
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._turn = threading.Condition()
        self._next_session = [0] * len(users)
        self._clicked: list[set[str]] = [set() for _ in users]
        self._variant: list[str | None] = [None] * len(users)
        self._pending: list[dict[str, Any]] = []
        self._error: BaseException | None = None
        self._counts = dict.fromkeys(
            (
                "sessions_done",
                "units_seen",
                "exposures",
                "clicks",
                "conversions",
                "events_sent",
                "events_inserted",
                "unassigned_sessions",
            ),
            0,
        )
        self._t0 = time.perf_counter()
        self._client: httpx.Client | None = None

    # --- public ---------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to finish: no new sessions start; queued events are still sent."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def progress(self) -> SimulationProgress:
        """Thread-safe snapshot of the counters."""
        with self._lock:
            c = dict(self._counts)
        return SimulationProgress(
            sessions_planned=len(self.plan),
            elapsed_s=time.perf_counter() - self._t0,
            stopped_early=self._stop.is_set() and c["sessions_done"] < len(self.plan),
            **c,
        )

    def run(self) -> SimulationProgress:
        """Execute the whole plan (or until `stop`), flush events, return the final counters."""
        self._t0 = time.perf_counter()
        limits = httpx.Limits(max_connections=self.config.concurrency + 2)
        with httpx.Client(
            base_url=self.base_url,
            timeout=self.config.timeout_s,
            limits=limits,
            transport=self._transport,
        ) as client:
            self._client = client
            with ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="sim") as pool:
                futures = [pool.submit(self._session, u, s) for u, s in self.plan]
                for f in futures:
                    f.result()
            if self._error is None:
                try:
                    self._flush(force=True)
                except BaseException as exc:
                    self._error = exc
            self._client = None
        if self._error is not None:
            raise SimulationError(f"simulation failed: {self._error}") from self._error
        return self.progress()

    # --- internals ------------------------------------------------------------------
    def _session(self, u: int, s: int) -> None:
        with self._turn:
            while self._next_session[u] != s and not self._stop.is_set():
                self._turn.wait(0.5)
        try:
            if not self._stop.is_set():
                self._run_session(u, s)
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
            self._stop.set()
        finally:
            with self._turn:
                self._next_session[u] = s + 1
                self._turn.notify_all()

    def _run_session(self, u: int, s: int) -> None:
        cfg = self.config
        user = self.users[u]
        body: dict[str, Any] = {"unit_id": user.unit_id, "experiment": cfg.experiment, "k": cfg.k}
        if cfg.send_history and self._clicked[u]:
            body["context"] = {"history": sorted(self._clicked[u])}
        resp = self._post("/v1/recommend", body)
        variant = resp.get("variant")
        items = resp.get("items") or []
        item_ids = [str(it["item_id"]) for it in items]
        positions = np.array([int(it["position"]) for it in items], dtype=np.int64)
        rng = np.random.default_rng([cfg.seed, zlib.crc32(user.unit_id.encode()), s])
        clicked_before = np.array([i in self._clicked[u] for i in item_ids], dtype=bool)
        clicks, conv = cfg.click_model.sample(
            rng, positions, user.ratings_for(item_ids), clicked_before
        )
        events: list[dict[str, Any]] = []
        first = self._variant[u] is None and variant is not None
        if variant is not None:
            self._variant[u] = str(variant)
            now = datetime.now(UTC).isoformat()
            request_id = str(resp["request_id"])
            base = {"experiment": cfg.experiment, "variant": str(variant), "unit_id": user.unit_id}
            if first and user.covariate is not None:
                events.append(
                    {
                        **base,
                        "event_id": f"cov:{cfg.experiment}:{user.unit_id}",
                        "type": "covariate",
                        "value": float(user.covariate),
                        "ts": now,
                    }
                )
            for j in np.flatnonzero(clicks):
                ev = {
                    **base,
                    "item_id": item_ids[j],
                    "position": int(positions[j]),
                    "request_id": request_id,
                    "ts": now,
                }
                events.append(
                    {**ev, "event_id": f"{request_id}:{positions[j]}:click", "type": "click"}
                )
                if conv[j]:
                    events.append(
                        {
                            **ev,
                            "event_id": f"{request_id}:{positions[j]}:conversion",
                            "type": "conversion",
                        }
                    )
            self._clicked[u].update(item_ids[j] for j in np.flatnonzero(clicks))
        with self._lock:
            c = self._counts
            c["sessions_done"] += 1
            if variant is None:
                c["unassigned_sessions"] += 1
            else:
                c["units_seen"] += int(first)
                c["exposures"] += len(items)
                c["clicks"] += int(clicks.sum())
                c["conversions"] += int(conv.sum())
            self._pending.extend(events)
        self._flush(force=False)
        if self.on_session is not None:
            self.on_session(self.progress())

    def _flush(self, *, force: bool) -> None:
        while True:
            with self._lock:
                if not self._pending or (
                    not force and len(self._pending) < self.config.event_batch
                ):
                    return
                batch = self._pending[: self.config.event_batch]
                del self._pending[: self.config.event_batch]
            out = self._post("/v1/events", {"events": batch})
            with self._lock:
                self._counts["events_sent"] += int(out.get("accepted", len(batch)))
                self._counts["events_inserted"] += int(out.get("inserted", 0))

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries on transport errors and 5xx (safe: event ids are idempotent)."""
        assert self._client is not None
        last: Exception | None = None
        for attempt in range(self.config.retries + 1):
            try:
                r = self._client.post(path, json=body)
            except httpx.TransportError as exc:
                last = exc
            else:
                if r.status_code < 300:
                    data = r.json()
                    assert isinstance(data, dict)
                    return data
                if r.status_code < 500:
                    raise SimulationError(f"POST {path} -> {r.status_code}: {r.text[:500]}")
                last = SimulationError(f"POST {path} -> {r.status_code}: {r.text[:200]}")
            time.sleep(0.05 * 2**attempt)
        raise SimulationError(f"POST {path} failed after {self.config.retries + 1} tries: {last}")
