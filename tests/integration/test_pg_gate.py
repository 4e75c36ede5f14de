"""The PostgreSQL gate: only a missing server may skip, never under CI, never a broken one."""

from __future__ import annotations

import errno
import socket

import pytest
import sqlalchemy as sa
from pg_gate import PG_URL, require_postgres, unreachable_reason

DEAD = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def test_refused_connection_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert unreachable_reason(DEAD) is not None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="unreachable"):
        require_postgres(DEAD)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        require_postgres(DEAD)


def test_opting_out_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABREC_SKIP_POSTGRES", "1")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="ABREC_SKIP_POSTGRES"):
        require_postgres(PG_URL)


def test_other_socket_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*_args: object, **_kw: object) -> socket.socket:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(socket, "create_connection", denied)
    with pytest.raises(PermissionError):
        require_postgres(PG_URL)


@pytest.mark.postgres
def test_a_reachable_server_that_refuses_the_session_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_postgres(PG_URL)  # the server itself is up (or this skips / fails in CI)
    monkeypatch.delenv("CI", raising=False)
    broken = sa.engine.make_url(PG_URL).set(database="abrec_no_such_database")
    url = broken.render_as_string(hide_password=False)
    assert unreachable_reason(url) is None  # it answers on TCP ...
    with pytest.raises(sa.exc.OperationalError, match="abrec_no_such_database"):
        require_postgres(url)  # ... so a refused session is a failure, not a skip
