"""Writing envelopes into the projection tables, batched: one insert per table per call."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from events import Envelope
from projections.apply import fact_rows, rows_for
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


def table_rows(
    envelopes: Iterable[Envelope], *, archive: bool = True
) -> dict[str, list[tuple[Any, ...]]]:
    """Pure: the rows of `envelopes` per table name, as tuples in column order, each
    event once (a duplicate event id within the batch is dropped), in write order.
    Without `archive`, only the derived tables' rows (not the raw `events` rows)."""
    return _grouped(envelopes, archive)[0]


def _grouped(
    envelopes: Iterable[Envelope], archive: bool
) -> tuple[dict[str, list[tuple[Any, ...]]], int]:
    """`table_rows`, and how many distinct events there were."""
    grouped: dict[str, list[tuple[Any, ...]]] = {table.name: [] for table in _WRITE_ORDER}
    seen: set[str] = set()
    for envelope in envelopes:
        if envelope.event_id in seen:
            continue
        seen.add(envelope.event_id)
        for row in rows_for(envelope) if archive else fact_rows(envelope):
            name = TABLE_OF[type(row)].name
            grouped[name].append(_TO_TUPLE[name](row))
    return {name: rows for name, rows in grouped.items() if rows}, len(seen)


class ProjectionWriter:
    """Writes events into the projection tables of `database` through a sync client.

    `write` is idempotent: writing an event again (same event id) changes no query
    answer. Blocking; call it from a worker thread in async code. It raises `StoreError`
    when an insert fails; tables inserted before the failure keep their rows, which is
    harmless since the caller writes the whole batch again."""

    def __init__(
        self, client: Client, database: str, *, body_retention_days: int | None = None
    ) -> None:
        self.client = client
        self.database = identifier(database)
        self.body_retention_days = body_retention_days

    def ensure_schema(self) -> None:
        """Create the database and tables unless they exist, add missing columns and set
        the body TTL to `body_retention_days` (see `create_schema`)."""
        create_schema(self.client, self.database, body_retention_days=self.body_retention_days)

    def reset(self) -> None:
        """Drop and recreate every projection table (empty), the archive included."""
        drop_schema(self.client, self.database)
        self.ensure_schema()

    def write(self, envelopes: Iterable[Envelope], *, archive: bool = True) -> int:
        """Insert the rows of `envelopes`, one insert per table; without `archive`, into
        the derived tables only (a rebuild from the archive). Returns how many distinct
        events were written."""
        batches, events = _grouped(envelopes, archive)
        for name, rows in batches.items():
            table = TABLE_NAMED[name]
            run_insert(self.client, self.database, name, rows, table.columns)
        return events
