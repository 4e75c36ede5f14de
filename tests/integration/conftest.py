"""Shared fixtures: a real event store on SQLite (temp file) and on PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pg_gate import PG_URL, unreachable_reason
from pg_gate import require_postgres as _require_postgres

from abrec.store import EventStore

_SESSION = uuid.uuid4().hex[:8]
_counter = itertools.count()


def _drop_prefixed(url: str, prefix: str) -> None:
    engine = sa.create_engine(url)
    try:
        md = sa.MetaData()
        md.reflect(engine, only=lambda name, _md: name.startswith(prefix))
        md.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def _sweep_postgres_tables() -> Iterator[None]:
    """Drop any table this test session created on PostgreSQL, even after failures."""
    yield
    if not os.environ.get("ABREC_SKIP_POSTGRES") and unreachable_reason() is None:
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
