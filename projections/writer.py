"""Writing envelopes into the projection tables, batched: one insert per table per call."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from events import Envelope
from projections.apply import fact_rows, rows_for
from projections.rollup import reconcile, winner_of
from projections.rows import LedgerRow
from projections.schema import (
    EVENTS,
    LEDGER,
    OUTCOMES,
    TABLE_NAMED,
    TABLE_OF,
    TABLES,
    Table,
    create_schema,
    drop_schema,
)
from projections.store import identifier, run_insert, run_query

# The raw log is written last: once an event is counted there, its facts are visible.
# The ledger is written by `ProjectionWriter` itself, after the outcomes (and the rollup
# by the view over it).
_WRITE_ORDER: tuple[Table, ...] = (*(t for t in TABLES if t is not EVENTS), EVENTS)
# Each task's winner: its first terminal event (the first row of its range).
_WINNERS = (
    "SELECT task_id, event_id, kind, ended_at, workspace_id, node_id, gpu_type, revision,"
    " gpu_us FROM {outcomes} WHERE task_id IN {{ids:Array(String)}}"
    " ORDER BY task_id, occurred_at, event_id LIMIT 1 BY task_id"
)
# What the ledger counts now, per (task, event) of those tasks.
_COUNTED = (
    "SELECT task_id, event_id, sum(delta) AS counted, any(ended_at), any(workspace_id),"
    " any(node_id), any(gpu_type), any(revision), any(gpu_us) FROM {ledger}"
    " WHERE task_id IN {{ids:Array(String)}} GROUP BY task_id, event_id HAVING counted != 0"
)
_EXISTS = "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}"
_TO_TUPLE: Mapping[str, Callable[[Any], tuple[Any, ...]]] = {
    table.name: operator.attrgetter(*table.columns) for table in (*TABLES, LEDGER)
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
        self._ledger: bool | None = None
        """Whether the database has the usage ledger (None: not known yet). A store an
        older version left has not until `ensure_schema` (which fills it)."""

    def ensure_schema(self) -> None:
        """Create the database and tables unless they exist, add missing columns and set
        the body TTL to `body_retention_days` (see `create_schema`)."""
        create_schema(self.client, self.database, body_retention_days=self.body_retention_days)
        self._ledger = True

    def reset(self) -> None:
        """Drop and recreate every projection table (empty), the archive and the usage
        rollup included."""
        drop_schema(self.client, self.database)
        self.ensure_schema()

    def write(self, envelopes: Iterable[Envelope], *, archive: bool = True) -> int:
        """Insert the rows of `envelopes`, one insert per table; without `archive`, into
        the derived tables only (a rebuild from the archive). Returns how many distinct
        events were written."""
        batches, events = _grouped(envelopes, archive)
        ended = sorted({row[0] for row in batches.get(OUTCOMES.name, ())})
        for name, rows in batches.items():
            if name == EVENTS.name and ended:
                self._count_usage(ended)
                ended = []
            table = TABLE_NAMED[name]
            run_insert(self.client, self.database, name, rows, table.columns)
        if ended:
            self._count_usage(ended)
        return events

    def _count_usage(self, task_ids: list[str]) -> None:
        """Bring the usage ledger of `task_ids` (tasks with a terminal event in this
        batch, already stored) in line with their winners (`projections.rollup`)."""
        if self._ledger is None:
            found = run_query(self.client, _EXISTS, {"db": self.database, "t": LEDGER.name})
            self._ledger = bool(found[0][0])
        if not self._ledger:
            return
        outcomes = f"{self.database}.{OUTCOMES.name}"
        ledger = f"{self.database}.{LEDGER.name}"
        rows = run_query(self.client, _WINNERS.format(outcomes=outcomes), {"ids": task_ids})
        winners = {row[0]: winner_of(row) for row in rows}
        counted = [
            LedgerRow(*row)
            for row in run_query(self.client, _COUNTED.format(ledger=ledger), {"ids": task_ids})
        ]
        entries = reconcile(winners, counted)
        if entries:
            rows_out = [_TO_TUPLE[LEDGER.name](entry) for entry in entries]
            run_insert(self.client, self.database, LEDGER.name, rows_out, LEDGER.columns)
