"""Writing envelopes into the projection tables, batched: one insert per table per call."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from events import Envelope
from projections.apply import rows_for
from projections.schema import (
    EVENTS,
    TABLE_NAMED,
    TABLE_OF,
    TABLES,
    Table,
    create_schema,
    drop_schema,
)
from projections.store import identifier, run_insert

# The raw log is written last: once an event is counted there, its facts are visible.
_WRITE_ORDER: tuple[Table, ...] = (*(t for t in TABLES if t is not EVENTS), EVENTS)
_TO_TUPLE: Mapping[str, Callable[[Any], tuple[Any, ...]]] = {
    table.name: operator.attrgetter(*table.columns) for table in TABLES
}


def table_rows(envelopes: Iterable[Envelope]) -> dict[str, list[tuple[Any, ...]]]:
    """Pure: the rows of `envelopes` per table name, as tuples in column order, each
    event once (a duplicate event id within the batch is dropped), in write order."""
    grouped: dict[str, list[tuple[Any, ...]]] = {table.name: [] for table in _WRITE_ORDER}
    seen: set[str] = set()
    for envelope in envelopes:
        if envelope.event_id in seen:
            continue
        seen.add(envelope.event_id)
        for row in rows_for(envelope):
            name = TABLE_OF[type(row)].name
            grouped[name].append(_TO_TUPLE[name](row))
    return {name: rows for name, rows in grouped.items() if rows}


class ProjectionWriter:
    """Writes events into the projection tables of `database` through a sync client.

    `write` is idempotent: writing an event again (same event id) changes no query
    answer. Blocking; call it from a worker thread in async code. It raises `StoreError`
    when an insert fails; tables inserted before the failure keep their rows, which is
    harmless since the caller writes the whole batch again."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = identifier(database)

    def ensure_schema(self) -> None:
        """Create the database and tables unless they exist."""
        create_schema(self.client, self.database)

    def reset(self) -> None:
        """Drop and recreate every projection table (empty)."""
        drop_schema(self.client, self.database)
        create_schema(self.client, self.database)

    def write(self, envelopes: Iterable[Envelope]) -> int:
        """Insert the rows of `envelopes`, one insert per table. Returns how many distinct
        events were written."""
        batches = table_rows(envelopes)
        for name, rows in batches.items():
            table = TABLE_NAMED[name]
            run_insert(self.client, self.database, name, rows, table.columns)
        return len(batches.get(EVENTS.name, ()))
