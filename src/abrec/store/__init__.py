"""Event store: append-only, idempotent events on SQLite (WAL) or PostgreSQL."""

from abrec.store.events import (
    EVENT_TYPES,
    UNIT_COLUMNS,
    Event,
    ExposureRow,
    event_row,
    exposure_rows,
)
from abrec.store.sql import EventStore, Impression
from abrec.store.writer import BatchWriter

__all__ = [
    "EVENT_TYPES",
    "UNIT_COLUMNS",
    "BatchWriter",
    "Event",
    "EventStore",
    "ExposureRow",
    "Impression",
    "event_row",
    "exposure_rows",
]
