"""Run the service with uvicorn in a background thread on a loopback port (tests, demo, simulator)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

from abrec.errors import AbrecError
from abrec.serve.app import create_app
from abrec.serve.config import ServeConfig
from abrec.serve.services import database_problem

__all__ = ["ServiceError", "ServiceThread", "database_problem"]


class ServiceError(AbrecError, RuntimeError):
    """The service thread failed to start or stop."""


class ServiceThread:
    """Context manager: `with ServiceThread(config) as svc: httpx.get(svc.url + "/healthz")`.

    Binds the socket itself (port 0 picks a free one), so `.url` is known before serving;
    on exit it asks uvicorn to shut down gracefully (the lifespan flushes the writer).
    """

    def __init__(
        self,
        config: ServeConfig | FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout_s: float = 120.0,
        log_level: str = "warning",
    ) -> None:
        self.app = config if isinstance(config, FastAPI) else create_app(config)
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self._uv_config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=30,
        )
        self.server = uvicorn.Server(self._uv_config)
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            assert self._sock is not None
            self.server.run(sockets=[self._sock])
        except BaseException as exc:  # reported to the starting thread
            self._error = exc

    def start(self) -> Self:
        """Bind, start serving, and wait until the lifespan startup completed."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.set_inheritable(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, name=f"abrec-serve-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                self._thread.join(timeout=10)
                sock.close()
                self._error = getattr(self.app.state, "startup_error", None) or self._error
                raise ServiceError(
                    f"the service did not start on {self.url}"
                    + (f": {self._error!r}" if self._error else " (see the log above)")
                ) from self._error
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Graceful shutdown: stop accepting, finish requests, flush the writer."""
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout=10)
        self._thread = None
        if self._error is not None:
            raise ServiceError(f"the service thread failed: {self._error!r}") from self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
