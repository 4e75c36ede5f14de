"""The one PostgreSQL gate for the integration tests: skip only when the server is truly absent.

Only a connection-level failure (connection refused, host or network unreachable, timeout,
unknown host) counts as "PostgreSQL is not running here": the test is skipped, except under
``CI=true`` where it fails. Anything else (authentication, a missing database, a driver or
SQL error) is a real problem and propagates. ``ABREC_SKIP_POSTGRES=1`` skips PostgreSQL on
purpose outside CI; under ``CI=true`` it fails too.
"""

from __future__ import annotations

import errno
import os
import socket

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("ABREC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

#: errno values that mean "no server listens there", as opposed to a server that misbehaves.
UNREACHABLE_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EADDRNOTAVAIL,
    }
)


def in_ci() -> bool:
    """Whether the run is CI (``CI=true``), where nothing may be skipped for a missing service."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unreachable_reason(url: str = PG_URL, timeout: float = 3.0) -> str | None:
    """Why nothing answers at the URL's host and port, or None when a TCP connection opens."""
    parsed = sa.engine.make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except (TimeoutError, socket.gaierror) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    except OSError as exc:
        if exc.errno in UNREACHABLE_ERRNOS:
            return f"{exc.__class__.__name__}: {exc}"
        raise


def require_postgres(url: str = PG_URL) -> None:
    """Skip (fail under CI=true) when PostgreSQL is absent; else check it answers a query.

    A server that accepts TCP connections but refuses the session or the query raises: that
    is a broken setup, not a missing one.
    """
    if os.environ.get("ABREC_SKIP_POSTGRES"):
        reason: str | None = "ABREC_SKIP_POSTGRES is set"
    else:
        reason = unreachable_reason(url)
    if reason is not None:
        msg = f"PostgreSQL at {url} is unreachable: {reason}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()
