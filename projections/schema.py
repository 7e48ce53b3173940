"""The projection tables and their DDL. Everything lives in one database per deployment
(tests use one database per test). `create_schema` is idempotent.

Tables (all `ReplacingMergeTree`, so a replayed event — same `event_id` — collapses into
one copy on merge; every query is written to be right before merges too):

- `events`, the archive: every event of every history topic, raw: the envelope's fields,
  `payload`, the codec's wire document of the event with its body blank, and `body`
  (see `EventRow`; `projections.archive` reads events back). Sorted by (topic, key,
  event_id): one entity's history is one range. It is the long-term record: the other
  tables are derived from it and can be rebuilt from it alone.
- `task_submissions`: one row per `TaskSubmitted` with all of its fields;
  `submitted_at` is the request time. Sorted by (workspace_id, submitted_at, task_id,
  event_id) so a workspace's task list over a time range is one range of the primary
  key, read in order; a bloom filter on `task_id` serves the point lookups of details.
- `task_dispatches`: one row per `TaskDispatched` (attempt, node id/ip/address).
- `task_requeues`: retryable `TaskFailed` and `TaskRetried`, only to tell a queued task
  from a running one.
- `task_outcomes`: one row per terminal event (`TaskCompleted`, non-retryable
  `TaskFailed`, `TaskCancelled`, `TaskExpired`) with status, response, timings, GPU time,
  node and reason. A task may have several; every query takes the first by
  (occurred_at, event_id) — the first terminal event wins. A minmax index on `ended_at`
  lets usage over a time range skip granules.

The per-task tables are sorted by task_id first, so a task's rows are one range, and
end with event_id, so duplicates of one event share the whole key. `task_outcomes` is
sorted by (task_id, occurred_at, event_id): each task's winner is its first row, which
`LIMIT 1 BY task_id` reads in key order without aggregating.

Rows carry `event_id` and `schema_version`. `create_schema` runs at every start: it adds
the columns a table lacks (a table created by an older version) and sets the body TTL.
Bodies (`events.body`, `task_submissions.request_body`, `task_outcomes.response_body`)
may age out: with a retention of N days, a column TTL replaces a body with "" once its
row's event is N days old (ClickHouse applies it when it merges parts). Other changes
of the derived tables' DDL are not migrated: drop them and rebuild them from `events`
(`projections.rebuild_from_archive`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from projections.rows import DispatchRow, EventRow, OutcomeRow, RequeueRow, Row, SubmissionRow
from projections.store import identifier, run_command, run_query

_TIME = "DateTime64(6, 'UTC')"
_ENVELOPE = {"event_id": "String", "schema_version": "UInt32"}
_TASK = {"task_id": "String", "workspace_id": "String", "attempt": "Int64", **_ENVELOPE}


@dataclass(frozen=True, slots=True)
class Table:
    """One table: its name, the row class whose fields are its columns (in order), the
    ClickHouse type of each column, the sorting (= deduplication) key and skip indexes;
    `body` names its body column, which ages out by the time column `body_time`."""

    name: str
    row: type[Row]
    types: Mapping[str, str]
    order_by: tuple[str, ...]
    indexes: tuple[str, ...] = ()
    body: str | None = None
    body_time: str = "occurred_at"

    def __post_init__(self) -> None:
        untyped = [c for c in self.columns if c not in self.types]
        if untyped:
            raise TypeError(f"table {self.name}: no ClickHouse type for {untyped}")
        if self.body is not None and not {self.body, self.body_time} <= set(self.columns):
            raise TypeError(f"table {self.name}: no column {self.body} or {self.body_time}")

    def body_ttl(self, days: int | None) -> str | None:
        """The TTL expression of the body column for a retention of `days` (None: keep),
        written as ClickHouse prints it back, so that a TTL in force can be compared."""
        if self.body is None or days is None:
            return None
        return f"toDateTime({self.body_time}) + toIntervalDay({days})"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.row))

    def ddl(self, database: str) -> str:
        """The `CREATE TABLE IF NOT EXISTS` statement in `database`."""
        lines = [f"`{c}` {self.types[c]}" for c in self.columns]
        lines += [f"INDEX {index}" for index in self.indexes]
        body = ",\n    ".join(lines)
        return (
            f"CREATE TABLE IF NOT EXISTS {identifier(database)}.{identifier(self.name)} (\n"
            f"    {body}\n) ENGINE = ReplacingMergeTree ORDER BY ({', '.join(self.order_by)})"
        )


EVENTS = Table(
    "events",
    EventRow,
    {
        **_ENVELOPE,
        "type": "LowCardinality(String)",
        "topic": "LowCardinality(String)",
        "key": "String",
        "occurred_at": _TIME,
        "payload": "String",
        "body": "String",
        "layout": "UInt8",
    },
    order_by=("topic", "key", "event_id"),
    body="body",
    # The start-up check for events archived in the old layout skips every granule of the
    # new one: its cost does not grow with the archive.
    indexes=("layout_minmax layout TYPE minmax GRANULARITY 1",),
)
SUBMISSIONS = Table(
    "task_submissions",
    SubmissionRow,
    {
        **_TASK,
        "submitted_at": _TIME,
        "seq": "Int64",
        "userkey": "String",
        "btc_address": "String",
        "mode": "LowCardinality(String)",
        "method": "String",
        "request_url": "String",
        "param_url": "String",
        "param_port": "Int64",
        "user_ip": "String",
        "request_body": "String",
        "body_encoding": "LowCardinality(String)",
        "content_type": "LowCardinality(String)",
        "gpu_type": "LowCardinality(String)",
        "gpu_count": "Int64",
        "timeout_s": "Float64",
        "priority": "Int64",
        "ttl_s": "Float64",
    },
    order_by=("workspace_id", "submitted_at", "task_id", "event_id"),
    indexes=("task_id_bloom task_id TYPE bloom_filter GRANULARITY 1",),
    body="request_body",
    body_time="submitted_at",
)
DISPATCHES = Table(
    "task_dispatches",
    DispatchRow,
    {
        **_TASK,
        "dispatched_at": _TIME,
        "node_id": "String",
        "node_ip": "String",
        "node_address": "String",
        "deployment_id": "String",
        "host_port": "Int64",
    },
    order_by=("task_id", "event_id"),
)
REQUEUES = Table(
    "task_requeues",
    RequeueRow,
    {
        **_TASK,
        "requeued_at": _TIME,
        "kind": "LowCardinality(String)",
        "node_id": "String",
        "code": "String",
        "reason": "String",
        "excluded_node_ids": "Array(String)",
    },
    order_by=("task_id", "event_id"),
)
OUTCOMES = Table(
    "task_outcomes",
    OutcomeRow,
    {
        **_TASK,
        "occurred_at": _TIME,
        "kind": "LowCardinality(String)",
        "node_id": "String",
        "node_ip": "String",
        "node_address": "String",
        "status_code": "Int64",
        "response_body": "String",
        "body_encoding": "LowCardinality(String)",
        "content_type": "LowCardinality(String)",
        "started_at": f"Nullable({_TIME})",
        "finished_at": f"Nullable({_TIME})",
        "ended_at": _TIME,
        "gpu_type": "LowCardinality(String)",
        "gpu_count": "Int64",
        "gpu_us": "Int64",
        "code": "String",
        "reason": "String",
        "revision": "Int64",
    },
    order_by=("task_id", "occurred_at", "event_id"),
    indexes=("ended_at_minmax ended_at TYPE minmax GRANULARITY 1",),
    body="response_body",
)

TABLES: tuple[Table, ...] = (EVENTS, SUBMISSIONS, DISPATCHES, REQUEUES, OUTCOMES)
"""Every projection table."""
DERIVED: tuple[Table, ...] = tuple(table for table in TABLES if table is not EVENTS)
"""The tables derived from the archive (`events`)."""
TABLE_OF: Mapping[type[Row], Table] = {table.row: table for table in TABLES}
"""The table each row class goes to."""
TABLE_NAMED: Mapping[str, Table] = {table.name: table for table in TABLES}
"""Every table by name."""

_COLUMNS = "SELECT table, name FROM system.columns WHERE database = {db:String}"
_INDEXES = "SELECT table, name FROM system.data_skipping_indices WHERE database = {db:String}"
_CREATE_QUERIES = "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}"
_RETENTION_DAYS = re.compile(r"toIntervalDay\((\d+)\)")


def create_schema(client: Client, database: str, *, body_retention_days: int | None = None) -> None:
    """Make `database` hold every table as declared: create what does not exist, add the
    columns an existing table lacks, and set the TTL of the body columns to
    `body_retention_days` (None: bodies are kept; a TTL in force is removed). Idempotent,
    and cheap when nothing changes: a TTL is altered only when it differs (ClickHouse
    then rewrites the body columns once, to apply it to the rows already stored)."""
    if body_retention_days is not None and body_retention_days < 1:
        raise ValueError(f"body_retention_days must be >= 1, got {body_retention_days}")
    db = identifier(database)
    run_command(client, f"CREATE DATABASE IF NOT EXISTS {db}")
    for table in TABLES:
        run_command(client, table.ddl(db))
    _add_missing_columns(client, db)
    _add_missing_indexes(client, db)
    _set_body_ttl(client, db, body_retention_days)


def body_retention(client: Client, database: str) -> int | None:
    """The body retention in days in force in `database` (its archive's body TTL), or
    None when bodies are kept."""
    ttl = _body_ttls(client, identifier(database)).get(EVENTS.name)
    found = _RETENTION_DAYS.search(ttl or "")
    return int(found.group(1)) if found else None


def _add_missing_columns(client: Client, db: str) -> None:
    present: dict[str, set[str]] = {}
    for table, column in run_query(client, _COLUMNS, {"db": db}):
        present.setdefault(table, set()).add(column)
    for table in TABLES:
        have = present.get(table.name, set())
        adds = [
            f"ADD COLUMN IF NOT EXISTS `{column}` {table.types[column]} AFTER `{previous}`"
            for previous, column in zip(table.columns, table.columns[1:], strict=False)
            if column not in have
        ]
        if adds:
            run_command(client, f"ALTER TABLE {db}.{table.name} {', '.join(adds)}")


def _add_missing_indexes(client: Client, db: str) -> None:
    """Skip indexes a table created by an older version lacks, built for its existing
    parts once (when added)."""
    present = {(t, i) for t, i in run_query(client, _INDEXES, {"db": db})}
    for table in TABLES:
        for index in table.indexes:
            name = index.split()[0]
            if (table.name, name) in present:
                continue
            run_command(client, f"ALTER TABLE {db}.{table.name} ADD INDEX IF NOT EXISTS {index}")
            run_command(client, f"ALTER TABLE {db}.{table.name} MATERIALIZE INDEX {name}")


def _set_body_ttl(client: Client, db: str, days: int | None) -> None:
    current = _body_ttls(client, db)
    for table in TABLES:
        wanted = table.body_ttl(days)
        if table.body is None or current.get(table.name) == wanted:
            continue
        change = f"TTL {wanted}" if wanted else "REMOVE TTL"
        run_command(client, f"ALTER TABLE {db}.{table.name} MODIFY COLUMN `{table.body}` {change}")


def _body_ttls(client: Client, db: str) -> dict[str, str | None]:
    """The TTL expression of each table's body column, read from its `CREATE` statement
    (ClickHouse has no system column for it)."""
    found: dict[str, str | None] = {}
    for name, query in run_query(client, _CREATE_QUERIES, {"db": db}):
        table = TABLE_NAMED.get(name)
        if table is not None and table.body is not None:
            found[name] = _column_ttl(query, table.body)
    return found


def _column_ttl(create_query: str, column: str) -> str | None:
    """The TTL of `column` in a `CREATE TABLE` statement as ClickHouse prints it (one
    line: "`name` Type [DEFAULT …] [TTL …], `next` …"), or None."""
    definition = re.search(
        rf"`{column}` (.*?)(?:, `|, INDEX |, PROJECTION |\) ENGINE)", create_query
    )
    if definition is None:
        return None
    _, ttl, expression = definition.group(1).partition(" TTL ")
    return expression if ttl else None


def drop_schema(client: Client, database: str, tables: Sequence[Table] = TABLES) -> None:
    """Drop `tables` (by default every projection table, the archive included) of
    `database` (the database itself stays)."""
    for table in tables:
        run_command(
            client, f"DROP TABLE IF EXISTS {identifier(database)}.{identifier(table.name)} SYNC"
        )
