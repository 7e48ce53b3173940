"""The projection tables and their DDL. Everything lives in one database per deployment
(tests use one database per test). `create_schema` is idempotent.

Tables (all `ReplacingMergeTree`, so a replayed event — same `event_id` — collapses into
its first copy on merge; every query is written to be right before merges too):

- `events`: every event of every topic, raw: the envelope's fields plus `payload`, the
  codec's wire document (`events.decode` reads it back). Sorted by (topic, key,
  event_id): one entity's history is one range.
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

Rows carry `event_id` and `schema_version`. A changed DDL is not migrated: rebuild into
a new database (`projections.rebuild`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from projections.rows import DispatchRow, EventRow, OutcomeRow, RequeueRow, Row, SubmissionRow
from projections.store import identifier, run_command

_TIME = "DateTime64(6, 'UTC')"
_ENVELOPE = {"event_id": "String", "schema_version": "UInt32"}
_TASK = {"task_id": "String", "workspace_id": "String", "attempt": "Int64", **_ENVELOPE}


@dataclass(frozen=True, slots=True)
class Table:
    """One table: its name, the row class whose fields are its columns (in order), the
    ClickHouse type of each column, the sorting (= deduplication) key and skip indexes."""

    name: str
    row: type[Row]
    types: Mapping[str, str]
    order_by: tuple[str, ...]
    indexes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        untyped = [c for c in self.columns if c not in self.types]
        if untyped:
            raise TypeError(f"table {self.name}: no ClickHouse type for {untyped}")

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
    },
    order_by=("topic", "key", "event_id"),
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
    },
    order_by=("task_id", "occurred_at", "event_id"),
    indexes=("ended_at_minmax ended_at TYPE minmax GRANULARITY 1",),
)

TABLES: tuple[Table, ...] = (EVENTS, SUBMISSIONS, DISPATCHES, REQUEUES, OUTCOMES)
"""Every projection table."""
TABLE_OF: Mapping[type[Row], Table] = {table.row: table for table in TABLES}
"""The table each row class goes to."""
TABLE_NAMED: Mapping[str, Table] = {table.name: table for table in TABLES}
"""Every table by name."""


def create_schema(client: Client, database: str) -> None:
    """Create `database` and every table in it unless they exist. Idempotent."""
    run_command(client, f"CREATE DATABASE IF NOT EXISTS {identifier(database)}")
    for table in TABLES:
        run_command(client, table.ddl(database))


def drop_schema(client: Client, database: str) -> None:
    """Drop every projection table of `database` (the database itself stays)."""
    for table in TABLES:
        run_command(
            client, f"DROP TABLE IF EXISTS {identifier(database)}.{identifier(table.name)} SYNC"
        )
