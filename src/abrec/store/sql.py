"""Append-only event store on SQLAlchemy Core: SQLite (WAL, embedded) or PostgreSQL (psycopg 3).

Durability: a call returns only after its transaction committed. SQLite runs in WAL
mode with ``synchronous=FULL``, so every commit is fsynced to the WAL before it
returns and an acknowledged event survives a crash or power loss (``NORMAL`` would
only survive process crashes). PostgreSQL uses its default ``synchronous_commit=on``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, make_url

from abrec.errors import StoreError
from abrec.stats.analysis import Term, VariantSums
from abrec.store.events import UNIT_COLUMNS, Event, ExposureRow, event_row
from abrec.store.ingest import (
    REFERENCING_TYPES,
    Ledger,
    LedgerRow,
    Outcome,
    decide,
    needs_exposure,
)

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")

#: `EventStore.serving` key of the model version the service processes serve.
SERVING_MODEL_KEY = "model_version"
#: Payloads of the change notifications (`EventStore.change_channel`).
CHANGED_EXPERIMENTS = "experiments"
CHANGED_MODEL = "model"


class VersionConflictError(StoreError):
    """A compare-and-set save of an experiment lost to another writer (nothing was stored)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _chunks(values: list[str], size: int = 2000) -> Iterator[list[str]]:
    """``values`` in slices small enough for any driver's parameter limit."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _utc(ts: Any) -> Any:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive or text)."""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    if isinstance(ts, datetime):
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts


def _as_stored(
    events: Sequence[Event | ExposureRow], outcomes: list[Outcome], inserted: set[str]
) -> list[Outcome]:
    """`outcomes` with an "inserted" event the insert skipped (its id was stored by
    then, e.g. by another writer between our lookup and our insert) as a duplicate."""
    return [
        Outcome("duplicate") if o.status == "inserted" and e.event_id not in inserted else o
        for e, o in zip(events, outcomes, strict=True)
    ]


@dataclass
class Impression:
    """One list shown to a unit (one request): items by position, what each exposure
    logged, and which items were clicked."""

    unit_id: str
    request_id: str
    ts: datetime
    items: list[str]
    sources: list[str | None]
    propensities: list[float | None]
    clicked: list[bool]


def _to_int(v: Any) -> int:
    return 0 if v is None else int(v)


def _to_float(v: Any) -> float:
    return 0.0 if v is None else float(v)


class EventStore:
    """Durable, idempotent, append-only event log plus experiment specs and sticky assignments."""

    def __init__(self, engine: Engine, *, table_prefix: str = "abrec_") -> None:
        if not _PREFIX_RE.match(table_prefix):
            raise StoreError(
                f"table_prefix {table_prefix!r} is invalid; use lower-case letters, digits "
                "and '_' (at most 31 characters, starting with a letter)"
            )
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.table_prefix = table_prefix
        self.dialect: str = engine.dialect.name
        md = sa.MetaData()
        p = table_prefix
        self.events = sa.Table(
            f"{p}events",
            md,
            sa.Column("event_id", sa.String(128), primary_key=True),
            sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
            sa.Column("experiment", sa.String(128), nullable=False),
            sa.Column("variant", sa.String(128), nullable=False),
            sa.Column("unit_id", sa.String(256), nullable=False),
            sa.Column("type", sa.String(32), nullable=False),
            sa.Column("item_id", sa.String(256), nullable=True),
            sa.Column("position", sa.Integer, nullable=True),
            sa.Column("value", sa.Double, nullable=True),
            sa.Column("request_id", sa.String(128), nullable=True),
            sa.Column("propensity", sa.Double, nullable=True),
            sa.Column("source", sa.String(256), nullable=True),
            sa.Column("model_version", sa.String(128), nullable=True),
            sa.Column("score", sa.Double, nullable=True),
            sa.Index(f"ix_{p}events_exp_unit", "experiment", "variant", "unit_id"),
            sa.Index(f"ix_{p}events_exp_type", "experiment", "type"),
        )
        self.experiments = sa.Table(
            f"{p}experiments",
            md,
            sa.Column("id", sa.String(128), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("spec", sa.Text, nullable=False),
            sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        )
        self.assignments = sa.Table(
            f"{p}assignments",
            md,
            sa.Column("experiment", sa.String(128), primary_key=True),
            sa.Column("unit_id", sa.String(256), primary_key=True),
            sa.Column("variant", sa.String(128), nullable=False),
            sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("propensity", sa.Double, nullable=True),
        )
        #: Deployment state every service process shares (key -> value), e.g. the model
        #: version the service serves (`SERVING_MODEL_KEY`).
        self.serving = sa.Table(
            f"{p}serving",
            md,
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.String(256), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        #: Documents one process computes for all of them (key -> text), e.g. the monitor's
        #: snapshot, which only the monitor leader computes (`abrec.serve.monitor`).
        self.documents = sa.Table(
            f"{p}documents",
            md,
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
        self.metadata = md

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_url(cls, url: str, *, table_prefix: str = "abrec_") -> EventStore:
        """Open a store at ``sqlite:///path.db`` or ``postgresql+psycopg://user@host:port/db``.

        Raises:
            StoreError: for an unsupported or in-memory URL.
        """
        try:
            parsed = make_url(url)
        except Exception as exc:
            raise StoreError(f"cannot parse store URL {url!r}: {exc}") from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            db = parsed.database
            if not db or db == ":memory:" or db.startswith("file::memory:"):
                raise StoreError(
                    "an in-memory SQLite store is not durable; use a file URL like "
                    "sqlite:///runs/events.db"
                )
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                parsed.set(drivername="sqlite+pysqlite"),
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=8,
                max_overflow=8,
            )
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        elif backend == "postgresql":
            engine = sa.create_engine(
                parsed.set(drivername="postgresql+psycopg"),
                pool_pre_ping=True,
                pool_size=8,
                max_overflow=8,
            )
        else:
            raise StoreError(
                f"unsupported store backend {backend!r}; use sqlite:///path.db or "
                "postgresql+psycopg://user@host:5432/db"
            )
        return cls(engine, table_prefix=table_prefix)

    @contextmanager
    def _tx(self, what: str, *, autocommit: bool = False) -> Iterator[Connection]:
        """A transaction committed on exit (with ``autocommit``: a connection on which
        each statement commits on its own, for a single-statement write)."""
        try:
            if autocommit:
                with self._autocommit.connect() as conn:
                    yield conn
            else:
                with self.engine.begin() as conn:
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"event store could not {what} ({self.dialect}): {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}; check that the database is reachable and the "
                "schema exists (create_schema())"
            ) from exc

    @property
    def table_names(self) -> list[str]:
        """Names of the tables this store owns."""
        return [t.name for t in self.metadata.sorted_tables]

    def create_schema(self) -> None:
        """Create the tables and indexes if they do not exist, and add the nullable
        columns later versions introduced to tables an earlier version created."""
        with self._tx("create the schema") as conn:
            self.metadata.create_all(conn, checkfirst=True)
            self._add_missing_columns(conn)

    def _add_missing_columns(self, conn: Connection) -> None:
        """``ALTER TABLE … ADD COLUMN`` for each nullable column a stored table lacks."""
        inspector = sa.inspect(conn)
        prep = self.engine.dialect.identifier_preparer
        for table in self.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for col in table.columns:
                if col.name in have:
                    continue
                if not col.nullable:
                    raise StoreError(
                        f"table {table.name} lacks the required column {col.name!r}; it was "
                        "created by an incompatible version: use a new table_prefix"
                    )
                kind = col.type.compile(dialect=self.engine.dialect)
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {prep.format_table(table)} "
                        f"ADD COLUMN {prep.quote(col.name)} {kind}"
                    )
                )

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            return pg_dialect.insert(table)
        return sqlite_dialect.insert(table)

    # ------------------------------------------------------------------ events
    def append_ids(self, events: Sequence[Event]) -> set[str]:
        """Insert events in one transaction; return the ids that were newly inserted.

        Idempotent on ``event_id``: ids already stored, or repeated within the batch
        (the first occurrence wins), are skipped. Nothing else is checked (use
        :meth:`ingest` for client events). Returns after the commit is durable.
        """
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for ev in events:
            if not isinstance(ev, Event):
                raise StoreError(f"append() takes Event objects, got {type(ev).__name__}")
            if ev.event_id in seen:
                continue
            seen.add(ev.event_id)
            rows.append(event_row(ev))
        if not rows:
            return set()
        with self._tx("append events") as conn:
            return self._insert_rows(conn, rows)

    def _insert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert rows with distinct ids (``ON CONFLICT DO NOTHING``); the ids inserted."""
        if not rows:
            return set()
        if self.dialect == "postgresql":
            # One statement over column arrays: ~3x faster than multi-row VALUES on psycopg.
            params = {c.name: [r[c.name] for r in rows] for c in self.events.columns}
            return set(conn.execute(self._pg_unnest_insert, params).scalars().all())
        stmt = (
            self._insert(self.events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(self.events.c.event_id)
        )
        return set(conn.execute(stmt, rows).scalars().all())

    def ingest(
        self, events: Sequence[Event | ExposureRow], *, verify: Sequence[bool] | None = None
    ) -> list[Outcome]:
        """Check and insert events in one transaction; one :class:`Outcome` per event, in order.

        Events with ``verify`` true (all by default) follow the ingestion rules of
        :mod:`abrec.store.ingest`: an ``event_id`` already stored (or earlier in the
        batch) with the same content is a ``duplicate``, with other content a
        ``conflict``; a click or conversion must reference an exposure and respects the
        bound (at most one per exposure). Unverified events (the service's own
        exposures) are only deduplicated on ``event_id``. The lookups are batched (one
        query for the ids, one for the referenced exposures) and run in the same
        transaction as the insert; on PostgreSQL a transaction-scoped advisory lock per
        experiment serialises concurrent writers of references, so the bound holds
        across service replicas. Returns after the commit is durable. (The service writes
        its exposures with `abrec.store.loop_writer.LoopWriter`'s COPY on PostgreSQL and
        hands it here only batches that reference exposures or hold stored ids.)
        """
        flags = [True] * len(events) if verify is None else list(verify)
        if len(flags) != len(events):
            raise StoreError(f"verify has {len(flags)} flags for {len(events)} events")
        for ev, checked in zip(events, flags, strict=True):
            if not isinstance(ev, Event) and not (isinstance(ev, ExposureRow) and not checked):
                raise StoreError(
                    f"ingest() takes Event objects (or unverified ExposureRows), got "
                    f"{type(ev).__name__}"
                )
        if not events:
            return []
        refs = [
            e
            for e, v in zip(events, flags, strict=True)
            if v and isinstance(e, Event) and needs_exposure(e)
        ]
        if self.dialect == "postgresql" and not any(flags):
            # Only the service's own events: nothing to look up, so the insert is the
            # whole transaction; autocommitted, it is one round trip, durable on return.
            outcomes, rows = decide(events, flags, {}, Ledger([]))
            with self._tx("ingest events", autocommit=True) as conn:
                inserted = self._insert_rows(conn, rows)
            return _as_stored(events, outcomes, inserted)
        with self._tx("ingest events") as conn:
            if self.dialect == "postgresql" and refs:
                for exp in sorted({e.experiment for e in refs}):
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                        {"k": f"{self.table_prefix}:{exp}"},
                    )
            # Only verified events need the stored rows (duplicate vs conflict); an
            # unverified one whose id is stored is skipped by the insert's ON CONFLICT and
            # reported as a duplicate below, so a batch of exposures costs one statement.
            checked_ids = {e.event_id for e, v in zip(events, flags, strict=True) if v}
            stored = self._stored_events(conn, sorted(checked_ids))
            ledger = Ledger(self._exposure_rows(conn, refs))
            outcomes, rows = decide(events, flags, stored, ledger)
            inserted = self._insert_rows(conn, rows)
        return _as_stored(events, outcomes, inserted)

    @property
    def column_names(self) -> list[str]:
        """The events table's columns, in table order (the order of `copy_sql`)."""
        return [c.name for c in self.events.columns]

    @property
    def copy_sql(self) -> str:
        """``COPY events (columns) FROM STDIN`` (PostgreSQL, text format)."""
        prep = self.engine.dialect.identifier_preparer
        names = ", ".join(prep.quote(c.name) for c in self.events.columns)
        return f"COPY {prep.format_table(self.events)} ({names}) FROM STDIN"

    @property
    def conninfo(self) -> str:
        """The database URL as libpq takes it, password included (for connections outside
        the pool: `abrec.store.loop_writer.LoopWriter`'s asyncio one, the sessions of
        `abrec.store.changes.open_session`)."""
        url = self.engine.url.set(drivername=self.dialect)
        return url.render_as_string(hide_password=False)

    def _stored_events(self, conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored events by id (as ``Event.model_dump()`` dicts, ``ts`` aware UTC)."""
        t = self.events
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            for r in conn.execute(sa.select(t).where(t.c.event_id.in_(chunk))).mappings():
                row = dict(r)
                row["ts"] = _utc(row["ts"])
                out[str(row["event_id"])] = row
        return out

    def _exposure_rows(self, conn: Connection, refs: Sequence[Event]) -> list[LedgerRow]:
        """Stored exposures, clicks and conversions of the units and items that ``refs`` name.

        One query per (experiment, variant) group and chunk; it uses the
        (experiment, variant, unit_id) index.
        """
        groups: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
        for e in refs:
            if e.item_id is None:
                continue
            units, items = groups.setdefault((e.experiment, e.variant), (set(), set()))
            units.add(e.unit_id)
            items.add(e.item_id)
        t = self.events.c
        out: list[LedgerRow] = []
        for (exp, variant), (units, items) in sorted(groups.items()):
            for unit_chunk in _chunks(sorted(units)):
                q = sa.select(
                    t.type, t.experiment, t.variant, t.unit_id, t.item_id, t.request_id, t.position
                ).where(
                    t.experiment == exp,
                    t.variant == variant,
                    t.unit_id.in_(unit_chunk),
                    t.item_id.in_(sorted(items)),
                    t.type.in_(("exposure", *REFERENCING_TYPES)),
                )
                out.extend(LedgerRow(*r) for r in conn.execute(q))
        return out

    @property
    def _pg_unnest_insert(self) -> sa.TextClause:
        """``INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING event_id``."""
        prep = self.engine.dialect.identifier_preparer
        cols = list(self.events.columns)
        names = ", ".join(prep.quote(c.name) for c in cols)
        arrays = ", ".join(
            f"CAST(:{c.name} AS {c.type.compile(dialect=self.engine.dialect)}[])" for c in cols
        )
        return sa.text(
            f"INSERT INTO {prep.format_table(self.events)} ({names}) "
            f"SELECT * FROM unnest({arrays}) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
        )

    def append(self, events: Sequence[Event]) -> int:
        """Insert events idempotently and durably; return how many were new."""
        return len(self.append_ids(events))

    def count(self, experiment: str | None = None) -> int:
        """Number of stored events (of one experiment when given)."""
        q = sa.select(sa.func.count()).select_from(self.events)
        if experiment is not None:
            q = q.where(self.events.c.experiment == experiment)
        with self._tx("count events") as conn:
            return int(conn.execute(q).scalar_one())

    def _per_unit(self, experiment: str) -> Any:
        e = self.events.c

        def n_of(kind: str) -> Any:
            return sa.func.sum(sa.case((e.type == kind, 1), else_=0))

        return (
            sa.select(
                e.variant.label("variant"),
                e.unit_id.label("unit_id"),
                n_of("exposure").label("exposures"),
                n_of("click").label("clicks"),
                n_of("conversion").label("conversions"),
                sa.func.avg(sa.case((e.type == "covariate", e.value), else_=None)).label(
                    "covariate"
                ),
                sa.func.min(e.ts).label("first_ts"),
            )
            .where(e.experiment == experiment)
            .group_by(e.variant, e.unit_id)
            .subquery("per_unit")
        )

    def aggregate(
        self, experiment: str, terms: Sequence[Term], require: str | None = None
    ) -> VariantSums:
        """Per-variant sums of products of per-unit columns, computed in SQL.

        Units are grouped first (per unit: ``exposures``, ``clicks``, ``conversions`` and
        the mean ``covariate``, NULL when the unit has none), then variants; only units with
        at least one exposure count. A term is a tuple of those column names whose product
        is summed, ``()`` counts units; with ``require``, only units where that column is
        not NULL count. This is the store's :data:`abrec.stats.Source`.

        Raises:
            StoreError: when a term or ``require`` names an unknown column.
        """
        u = self._per_unit(experiment).c
        known = set(UNIT_COLUMNS)
        used = {c for t in terms for c in t} | ({require} if require is not None else set())
        bad = sorted(used - known)
        if bad:
            raise StoreError(f"unknown per-unit column(s) {bad}; use {list(UNIT_COLUMNS)}")

        def total(term: Term) -> Any:
            if not term:
                return sa.func.count()
            prod = u[term[0]]
            for c in term[1:]:
                prod = prod * u[c]
            return sa.func.sum(prod)

        q = sa.select(u.variant, *(total(t) for t in terms)).where(u.exposures > 0)
        if require is not None:
            q = q.where(u[require].is_not(None))
        q = q.group_by(u.variant).order_by(u.variant)
        with self._tx("aggregate per-unit data") as conn:
            rows = conn.execute(q).all()
        return {
            str(r[0]): {t: _to_float(v) for t, v in zip(terms, r[1:], strict=True)} for r in rows
        }

    def source(self, experiment: str) -> Callable[[Sequence[Term], str | None], VariantSums]:
        """:meth:`aggregate` bound to one experiment: an :data:`abrec.stats.Source`."""

        def source(terms: Sequence[Term], require: str | None = None) -> VariantSums:
            return self.aggregate(experiment, terms, require)

        return source

    def unit_frame(self, experiment: str) -> dict[str, np.ndarray]:
        """Per-unit aggregates (aggregated in SQL), one row per (variant, unit).

        Columns: unit_id, variant (object arrays), exposures, clicks, conversions
        (int64), covariate (float64, NaN where none), first_ts (datetime64[us], UTC).
        Units without exposures are included; filter on ``exposures > 0`` as needed.
        """
        u = self._per_unit(experiment).c
        q = sa.select(
            u.unit_id, u.variant, u.exposures, u.clicks, u.conversions, u.covariate, u.first_ts
        ).order_by(u.variant, u.unit_id)
        with self._tx("read per-unit data") as conn:
            rows = conn.execute(q).all()
        first_ts = []
        for r in rows:
            ts = r[6]
            if isinstance(ts, str):  # SQLite may hand back the stored text
                ts = datetime.fromisoformat(ts)
            if ts is not None and ts.tzinfo is not None:
                ts = ts.astimezone(UTC).replace(tzinfo=None)
            first_ts.append(ts)
        return {
            "unit_id": np.array([str(r[0]) for r in rows], dtype=object),
            "variant": np.array([str(r[1]) for r in rows], dtype=object),
            "exposures": np.array([_to_int(r[2]) for r in rows], dtype=np.int64),
            "clicks": np.array([_to_int(r[3]) for r in rows], dtype=np.int64),
            "conversions": np.array([_to_int(r[4]) for r in rows], dtype=np.int64),
            "covariate": np.array(
                [np.nan if r[5] is None else float(r[5]) for r in rows], dtype=np.float64
            ),
            "first_ts": np.array(first_ts, dtype="datetime64[us]"),
        }

    def impressions(self, experiment: str) -> list[Impression]:
        """Every list the service showed in an experiment, with its clicks, in time order.

        One :class:`Impression` per request (its exposures ordered by position). A click
        with a ``request_id`` marks that request's item; one without marks the earliest
        exposure of that item to that unit not already clicked (the ingestion rules
        guarantee there is one).
        """
        e = self.events.c
        cols = (e.unit_id, e.request_id, e.item_id, e.position, e.source, e.propensity, e.ts)
        q_exp = (
            sa.select(*cols)
            .where(e.experiment == experiment, e.type == "exposure", e.request_id.is_not(None))
            .order_by(e.ts, e.request_id, e.position)
        )
        q_clk = sa.select(e.unit_id, e.request_id, e.item_id).where(
            e.experiment == experiment, e.type == "click"
        )
        with self._tx("read impressions") as conn:
            exposures = conn.execute(q_exp).all()
            clicks = conn.execute(q_clk).all()
        by_request: dict[str, Impression] = {}
        slot: dict[tuple[str, str], int] = {}
        by_unit_item: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for unit, req, item, _pos, src, prop, ts in exposures:
            imp = by_request.get(req)
            if imp is None:
                imp = by_request[req] = Impression(str(unit), str(req), _utc(ts), [], [], [], [])
            slot[(req, item)] = len(imp.items)
            by_unit_item.setdefault((unit, item), []).append((req, len(imp.items)))
            imp.items.append(str(item))
            imp.sources.append(None if src is None else str(src))
            imp.propensities.append(None if prop is None else float(prop))
            imp.clicked.append(False)
        loose: list[tuple[str, str]] = []
        for unit, req, item in clicks:
            where = slot.get((req, item)) if req is not None else None
            if where is not None and by_request[req].unit_id == unit:
                by_request[req].clicked[where] = True
            else:
                loose.append((unit, item))
        for unit, item in loose:
            for req, pos in by_unit_item.get((unit, item), []):
                if not by_request[req].clicked[pos]:
                    by_request[req].clicked[pos] = True
                    break
        return list(by_request.values())

    def recent_exposures(self, experiment: str, limit: int) -> dict[str, np.ndarray]:
        """The latest ``limit`` exposures of an experiment (newest first), for drift checks.

        Columns: variant, item_id, request_id (object arrays; request_id may be None) and
        score (float64, NaN where the exposure logged none).
        """
        if limit < 1:
            raise StoreError(f"limit must be >= 1, got {limit}")
        e = self.events.c
        q = (
            sa.select(e.variant, e.item_id, e.request_id, e.score)
            .where(e.experiment == experiment, e.type == "exposure")
            .order_by(e.ts.desc(), e.event_id.desc())
            .limit(limit)
        )
        with self._tx("read recent exposures") as conn:
            rows = conn.execute(q).all()
        return {
            "variant": np.array([str(r[0]) for r in rows], dtype=object),
            "item_id": np.array([None if r[1] is None else str(r[1]) for r in rows], dtype=object),
            "request_id": np.array([r[2] for r in rows], dtype=object),
            "score": np.array(
                [math.nan if r[3] is None else float(r[3]) for r in rows], dtype=np.float64
            ),
        }

    # ------------------------------------------------------------------ experiments
    def save_experiment(
        self, spec_json: dict[str, Any], *, expected_version: int | None = None
    ) -> int:
        """Store a new version of an experiment spec (must contain ``id``); return its version.

        With ``expected_version`` (0: the id must be new) the save is a compare-and-set:
        it stores version ``expected_version + 1`` or, when another writer (another service
        process) stored a version after ``expected_version``, raises `VersionConflictError`
        and stores nothing.
        """
        exp_id = spec_json.get("id")
        if not isinstance(exp_id, str) or not exp_id:
            raise StoreError("save_experiment needs a spec dict with a non-empty string 'id'")
        t = self.experiments
        payload = json.dumps(spec_json, sort_keys=True)
        if expected_version is not None:
            row = {
                "id": exp_id,
                "version": expected_version + 1,
                "spec": payload,
                "saved_at": datetime.now(UTC),
            }
            try:
                with self.engine.begin() as conn:
                    conn.execute(t.insert().values(**row))
                    self._notify(conn, CHANGED_EXPERIMENTS)
            except sa.exc.IntegrityError as exc:
                raise VersionConflictError(
                    f"experiment {exp_id!r} was changed by another writer after version "
                    f"{expected_version}"
                ) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"could not save experiment {exp_id!r}: {exc}") from exc
            return expected_version + 1
        next_version = sa.select(
            sa.literal(exp_id, sa.String(128)),
            sa.func.coalesce(sa.func.max(t.c.version), 0) + 1,
            sa.literal(payload, sa.Text),
            sa.literal(datetime.now(UTC), sa.DateTime(timezone=True)),
        ).where(t.c.id == exp_id)
        stmt = (
            t.insert()
            .from_select(["id", "version", "spec", "saved_at"], next_version)
            .returning(t.c.version)  # this insert's version, not a concurrent writer's
        )
        for attempt in range(8):
            try:
                with self.engine.begin() as conn:
                    version = conn.execute(stmt).scalar_one()
                    self._notify(conn, CHANGED_EXPERIMENTS)
                return int(version)
            except sa.exc.IntegrityError:  # a concurrent save took this version; retry
                time.sleep(0.01 * (attempt + 1))
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"could not save experiment {exp_id!r}: {exc}") from exc
        raise StoreError(f"could not save experiment {exp_id!r}: too many concurrent writers")

    def load_experiment(self, exp_id: str) -> tuple[int, dict[str, Any]] | None:
        """(latest version, spec) of one experiment, None when no version is stored."""
        t = self.experiments
        q = sa.select(t.c.version, t.c.spec).where(t.c.id == exp_id)
        q = q.order_by(t.c.version.desc()).limit(1)
        with self._tx("load an experiment") as conn:
            row = conn.execute(q).first()
        return None if row is None else (int(row[0]), json.loads(row[1]))

    def load_experiments(self) -> list[dict[str, Any]]:
        """Latest stored version of every experiment spec, ordered by id."""
        t = self.experiments
        latest = sa.select(t.c.id, sa.func.max(t.c.version).label("v")).group_by(t.c.id).subquery()
        q = (
            sa.select(t.c.spec)
            .join(latest, sa.and_(t.c.id == latest.c.id, t.c.version == latest.c.v))
            .order_by(t.c.id)
        )
        with self._tx("load experiments") as conn:
            return [json.loads(s) for s in conn.execute(q).scalars()]

    # ------------------------------------------------------------------ assignments
    def get_assignment(self, experiment: str, unit_id: str) -> str | None:
        """The stored (sticky) variant of a unit, or None."""
        row = self.get_assignment_row(experiment, unit_id)
        return None if row is None else row[0]

    def get_assignment_row(self, experiment: str, unit_id: str) -> tuple[str, float | None] | None:
        """The stored (variant, assignment probability) of a unit, or None."""
        t = self.assignments
        q = sa.select(t.c.variant, t.c.propensity).where(
            t.c.experiment == experiment, t.c.unit_id == unit_id
        )
        with self._tx("read an assignment") as conn:
            r = conn.execute(q).first()
        return None if r is None else (str(r[0]), None if r[1] is None else float(r[1]))

    def assignment_frame(self, experiment: str) -> dict[str, np.ndarray]:
        """Every stored assignment of an experiment, in assignment order.

        Columns: unit_id, variant (object arrays), propensity (float64, NaN where none was
        logged), assigned_at (datetime64[us], UTC).
        """
        t = self.assignments
        q = (
            sa.select(t.c.unit_id, t.c.variant, t.c.propensity, t.c.assigned_at)
            .where(t.c.experiment == experiment)
            .order_by(t.c.assigned_at, t.c.unit_id)
        )
        with self._tx("read assignments") as conn:
            rows = conn.execute(q).all()
        at = [_utc(r[3]).replace(tzinfo=None) for r in rows]
        return {
            "unit_id": np.array([str(r[0]) for r in rows], dtype=object),
            "variant": np.array([str(r[1]) for r in rows], dtype=object),
            "propensity": np.array(
                [np.nan if r[2] is None else float(r[2]) for r in rows], dtype=np.float64
            ),
            "assigned_at": np.array(at, dtype="datetime64[us]"),
        }

    def get_assignments(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Stored variants of many (experiment, unit_id) pairs in one query; absent pairs are left out."""
        return {k: v for k, (v, _) in self.get_assignment_rows(pairs).items()}

    def get_assignment_rows(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, float | None]]:
        """Stored (variant, probability) of many (experiment, unit_id) pairs in one query."""
        wanted: dict[str, set[str]] = {}
        for experiment, unit_id in pairs:
            wanted.setdefault(experiment, set()).add(unit_id)
        if not wanted:
            return {}
        t = self.assignments
        cond = sa.or_(
            *(
                sa.and_(t.c.experiment == exp, t.c.unit_id.in_(sorted(units)))
                for exp, units in sorted(wanted.items())
            )
        )
        q = sa.select(t.c.experiment, t.c.unit_id, t.c.variant, t.c.propensity).where(cond)
        with self._tx("read assignments") as conn:
            rows = conn.execute(q).all()
        return {
            (str(r[0]), str(r[1])): (str(r[2]), None if r[3] is None else float(r[3])) for r in rows
        }

    def save_assignment(
        self, experiment: str, unit_id: str, variant: str, propensity: float | None = None
    ) -> str:
        """Store a unit's variant unless one is stored already; return the stored variant."""
        return self.save_assignment_row(experiment, unit_id, variant, propensity)[0]

    def save_assignment_row(
        self, experiment: str, unit_id: str, variant: str, propensity: float | None = None
    ) -> tuple[str, float | None]:
        """Store a unit's variant and the probability it had, unless the unit has one
        already; return the stored (variant, probability): the first assignment wins."""
        t = self.assignments
        stmt = (
            self._insert(t)
            .values(
                experiment=experiment,
                unit_id=unit_id,
                variant=variant,
                assigned_at=datetime.now(UTC),
                propensity=propensity,
            )
            .on_conflict_do_nothing(index_elements=["experiment", "unit_id"])
        )
        q = sa.select(t.c.variant, t.c.propensity).where(
            t.c.experiment == experiment, t.c.unit_id == unit_id
        )
        with self._tx("save an assignment") as conn:
            conn.execute(stmt)
            r = conn.execute(q).one()
        return str(r[0]), None if r[1] is None else float(r[1])

    # ------------------------------------------------------------------ shared deployment state
    @property
    def change_channel(self) -> str:
        """The PostgreSQL ``LISTEN``/``NOTIFY`` channel on which this store announces changes
        of experiments and of the serving model (payload `CHANGED_EXPERIMENTS` or
        `CHANGED_MODEL`)."""
        return f"{self.table_prefix}changes"

    def _notify(self, conn: Connection, what: str) -> None:
        """Announce a change on PostgreSQL; delivered to listeners when ``conn`` commits."""
        if self.dialect == "postgresql":
            conn.execute(
                sa.text("SELECT pg_notify(:channel, :what)"),
                {"channel": self.change_channel, "what": what},
            )

    def set_serving_model(self, version: str) -> None:
        """Store the model version every service process should serve (and announce it)."""
        t = self.serving
        values = {"key": SERVING_MODEL_KEY, "value": version, "updated_at": datetime.now(UTC)}
        stmt = (
            self._insert(t)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["key"],
                set_={"value": version, "updated_at": values["updated_at"]},
            )
        )
        with self._tx("store the serving model version") as conn:
            conn.execute(stmt)
            self._notify(conn, CHANGED_MODEL)

    def save_document(self, key: str, body: str) -> None:
        """Store (replace) the shared document ``key``."""
        t = self.documents
        now = datetime.now(UTC)
        stmt = (
            self._insert(t)
            .values(key=key, body=body, updated_at=now)
            .on_conflict_do_update(index_elements=["key"], set_={"body": body, "updated_at": now})
        )
        with self._tx(f"store the {key} document") as conn:
            conn.execute(stmt)

    def document(self, key: str) -> str | None:
        """The shared document ``key`` (None until one was stored)."""
        t = self.documents
        with self._tx(f"read the {key} document") as conn:
            body = conn.execute(sa.select(t.c.body).where(t.c.key == key)).scalar_one_or_none()
        return None if body is None else str(body)

    def serving_model(self) -> str | None:
        """The stored serving model version (None until a reload stored one)."""
        return self.change_token()[1]

    def change_token(self) -> tuple[int, str | None]:
        """(number of stored experiment versions, serving model version) in one query.

        Experiment versions are only ever appended, so the count grows with every
        create/start/stop/weights change in any process: a process that polls this
        token sees every change another one made.
        """
        e, s = self.experiments, self.serving
        q = sa.select(
            sa.select(sa.func.count()).select_from(e).scalar_subquery(),
            sa.select(s.c.value).where(s.c.key == SERVING_MODEL_KEY).scalar_subquery(),
        )
        with self._tx("read the change token") as conn:
            n, version = conn.execute(q).one()
        return int(n), None if version is None else str(version)

    def __repr__(self) -> str:
        return f"EventStore({self.dialect}, prefix={self.table_prefix!r})"
