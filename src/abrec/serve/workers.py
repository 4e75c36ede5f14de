"""`abrec serve --workers N`: N worker processes behind one port, connections dealt in turn.

The parent binds the port and accepts every connection, then passes the connected socket
to the next ready worker in turn (round robin, over a Unix socket pair with SCM_RIGHTS,
as Node's `cluster` module does by default). A worker runs the app under uvicorn and
serves a received socket exactly as one it accepted itself (`HandoffServer`). No request
byte passes through the parent.

Why not uvicorn's own workers: they share one listening socket and race to accept, and
the worker that wakes first takes a burst. wrk's 16 keep-alive connections split 10/6,
11/5, even 1/15 in `benchmarks/bench_serve.py`, and the busier worker's queue set the p99.
Dealt in turn they split 8/8.

Lifecycle: the parent accepts only once every worker has started (connections wait in
the listen backlog until then). A worker that fails to start stops the service with its
exit code (3: the database stayed unreachable, uvicorn's start-up failure). A worker that
dies later is started again and gets no connection until it is ready. SIGTERM or SIGINT:
the parent closes the port, sends SIGTERM to every worker (each finishes its requests and
flushes its writers: uvicorn's graceful shutdown, then the app's lifespan) and exits 0
when they all stopped cleanly, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.process
import select
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("uvicorn.error")

#: The app every worker serves (its config is the TOML file named by ABREC_SERVE_CONFIG).
APP = "abrec.serve.app:app_from_env"

#: The byte a worker sends its parent once it serves (its lifespan started).
READY = b"R"
#: The byte that carries each handed-over connection.
CONNECTION = b"C"
#: Exit codes of a worker that stopped cleanly on our SIGTERM (uvicorn re-raises the
#: signal after its graceful shutdown).
CLEAN_EXITS = (0, -signal.SIGTERM)


class HandoffServer(uvicorn.Server):
    """A uvicorn server that listens on nothing itself: it serves the connections its
    parent passes over `channel` (a SOCK_SEQPACKET Unix socket)."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self._pending: set[asyncio.Future[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan; no listening socket
        if self.should_exit:
            return
        self.channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._take)
        self.channel.send(READY)

    def _protocol(self) -> asyncio.Protocol:
        """The HTTP protocol uvicorn's own `startup` builds for an accepted connection."""
        factory: Any = self.config.http_protocol_class
        protocol: asyncio.Protocol = factory(
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol

    def _take(self) -> None:
        """Serve every connection waiting on the channel; the parent gone means stop."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.channel, 16, 16)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the parent closed its end: it is gone
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                task = asyncio.ensure_future(loop.connect_accepted_socket(self._protocol, sock))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):  # not added (start-up failed) or closed
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets)


def _worker_main(options: dict[str, Any], channel: socket.socket) -> None:
    """A worker process: the app factory under a `HandoffServer`."""
    HandoffServer(uvicorn.Config(APP, factory=True, **options), channel).run()


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    channel: socket.socket
    ready: bool = False


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


class Supervisor:
    """The parent of `abrec serve --workers N` (see the module docstring).

    ``options`` are uvicorn `Config` keywords for the workers (log level, graceful timeout…);
    the app comes from `abrec.serve.app.app_from_env` in each worker.
    """

    def __init__(
        self, host: str, port: int, workers: int, options: dict[str, Any], backlog: int = 2048
    ) -> None:
        if workers < 2:
            raise ValueError("a supervisor needs at least two workers")
        self.host, self.port, self.n = host, port, workers
        self.options = options
        self.backlog = backlog
        uvicorn.Config(APP, factory=True, **options)  # logs as the workers do (its side effect)
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._next = 0
        self._stop = False

    def _spawn(self) -> _Worker:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = self._ctx.Process(
            target=_worker_main, args=(self.options, child_end), name="abrec-worker"
        )
        process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._stop = True

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code."""
        listener = _bind(self.host, self.port, self.backlog)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        log.info("Started parent process; %d workers, connections dealt in turn", self.n)
        code = 1
        try:
            self._workers = [self._spawn() for _ in range(self.n)]
            code = self._loop(listener)
        finally:
            listener.close()
            code = self._stop_workers(code)
            for s, h in previous.items():
                signal.signal(s, h)
        return code

    def _loop(self, listener: socket.socket) -> int:
        started = False  # every first worker ready: from then on the port is served
        while not self._stop:
            failed = self._check_workers()
            if failed is not None:
                return failed
            waiting = [w.channel for w in self._workers if not w.ready]
            accepting = started and any(w.ready for w in self._workers)
            watched = [*waiting, listener] if accepting else waiting
            readable, _, _ = select.select(watched, [], [], 0.25)
            for w in self._workers:
                if w.channel in readable and w.channel.recv(16) == READY:
                    w.ready = True
                    log.info("worker %s is ready", w.process.pid)
            started = started or all(w.ready for w in self._workers)
            if listener in readable:
                self._accept(listener)
        return 0

    def _accept(self, listener: socket.socket) -> None:
        """Accept what waits and hand each connection to the next ready worker."""
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. too many open files: retry on the next wake-up
                log.warning("accept failed: %s", exc)
                return
            try:
                self._hand(conn)
            finally:
                conn.close()

    def _hand(self, conn: socket.socket) -> None:
        for _ in range(len(self._workers)):
            w = self._workers[self._next % len(self._workers)]
            self._next += 1
            if not w.ready:
                continue
            try:
                socket.send_fds(w.channel, [CONNECTION], [conn.fileno()])
            except OSError:  # the worker is gone; `_check_workers` replaces it
                continue
            return
        log.error("no worker is ready; a connection was closed unserved")

    def _check_workers(self) -> int | None:
        """Replace a worker that died after it started; the exit code of one that exited
        before it was ready (the service stops: it would fail again)."""
        for i, w in enumerate(self._workers):
            code = w.process.exitcode
            if code is None:
                continue
            w.channel.close()
            if not w.ready:
                log.error("worker %s failed to start (exit code %s)", w.process.pid, code)
                self._workers.pop(i)
                return code if code > 0 else 1
            log.error("worker %s died (exit code %s); starting another", w.process.pid, code)
            self._workers[i] = self._spawn()
        return None

    def _stop_workers(self, code: int, timeout_s: float = 60.0) -> int:
        """SIGTERM every worker and wait; `code`, or 1 when one did not stop cleanly."""
        for w in self._workers:
            if w.process.exitcode is None and w.process.pid is not None:
                w.process.terminate()
        deadline = time.monotonic() + timeout_s
        for w in self._workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.exitcode is None:
                log.error("worker %s did not stop in %.0f s; killed", w.process.pid, timeout_s)
                w.process.kill()
                w.process.join()
                code = code or 1
            elif w.process.exitcode not in CLEAN_EXITS:
                code = code or 1
            w.channel.close()
        log.info("Stopping parent process")
        return code


__all__ = ["HandoffServer", "Supervisor"]
