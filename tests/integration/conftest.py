"""Shared fixtures: a real event store on SQLite (temp file) and on PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from abrec.store import EventStore

PG_URL = os.environ.get("ABREC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_SESSION = uuid.uuid4().hex[:8]
_counter = itertools.count()


def _pg_unreachable(url: str = PG_URL) -> str | None:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure means the server is not usable
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


def _drop_prefixed(url: str, prefix: str) -> None:
    engine = sa.create_engine(url)
    try:
        md = sa.MetaData()
        md.reflect(engine, only=lambda name, _md: name.startswith(prefix))
        md.drop_all(engine)
    finally:
        engine.dispose()


def _require_postgres(url: str = PG_URL) -> None:
    """Skip when PostgreSQL is unreachable, but fail loudly in CI (CI=true)."""
    reason = _pg_unreachable(url)
    if reason is not None:
        msg = f"PostgreSQL at {url} is unreachable: {reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session", autouse=True)
def _sweep_postgres_tables() -> Iterator[None]:
    """Drop any table this test session created on PostgreSQL, even after failures."""
    yield
    if _pg_unreachable() is None:
        _drop_prefixed(PG_URL, f"t{_SESSION}_")


@pytest.fixture
def require_postgres() -> Callable[[str], None]:
    """The check the ``postgres`` store parameter runs (exposed for its own test)."""
    return _require_postgres


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh store on each backend."""
    if request.param == "postgres":
        _require_postgres()
        return PG_URL
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def table_prefix() -> str:
    """A table prefix unique to this test (and this session)."""
    return f"t{_SESSION}_{next(_counter)}_"


@pytest.fixture
def store(store_url: str, table_prefix: str) -> Iterator[EventStore]:
    """An empty event store with its schema created; its tables are dropped afterwards."""
    s = EventStore.from_url(store_url, table_prefix=table_prefix)
    s.create_schema()
    try:
        yield s
    finally:
        s.dispose()
        if s.dialect == "postgresql":
            _drop_prefixed(store_url, table_prefix)
