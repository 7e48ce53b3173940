"""The projection tables and their DDL. Everything lives in one database per deployment
(tests use one database per test). `create_schema` is idempotent.

Tables (`ReplacingMergeTree` but for the usage ledger and rollup, so a replayed event —
same `event_id` — collapses into one copy on merge; every query is written to be right
before merges too), each sorted by the key its reads look rows up by:

- `events`, the archive: every event of every history topic, raw: the envelope's fields,
  `payload`, the codec's wire document of the event with its body blank, and `body`
  (see `EventRow`; `projections.archive` reads events back). Sorted by (topic, key,
  event_id): one entity's history is one range. It is the long-term record: the other
  tables are derived from it and can be rebuilt from it alone.
- `task_submissions`: one row per `TaskSubmitted` with all of its fields;
  `submitted_at` is the request time. Sorted by (workspace_id, submitted_at, task_id,
  event_id) so a workspace's task list over a time range, and a page of it after a
  cursor, is one range of the primary key, read in order and stopped at the page's end.
  Its projection `by_task` (task_id, workspace_id, submitted_at, event_id sorted by
  task_id) finds a task by id in one granule: details, statuses and cursors look the
  task's place up there, then read its row by the table's own key.
- `task_dispatches`: one row per `TaskDispatched` (attempt, node id/ip/address).
- `task_requeues`: retryable `TaskFailed` and `TaskRetried`, only to tell a queued task
  from a running one.
- `task_outcomes`: one row per terminal event (`TaskCompleted`, non-retryable
  `TaskFailed`, `TaskCancelled`, `TaskExpired`) with status, response, timings, GPU time,
  node and reason. A task may have several; every query takes the first by
  (occurred_at, event_id) — the first terminal event wins.
- `usage_ledger` (plain `MergeTree`, sorted by task id, with a projection `by_end`
  sorted by response time) and `usage_daily` (`SummingMergeTree` sorted by (day,
  workspace, node, GPU type, revision)), filled by the materialized view
  `usage_daily_mv` on every insert into the ledger: usage pre-aggregated at write time,
  each completed task counted once (`projections.rollup`). Usage reads the rollup for
  whole UTC days and the ledger by response time for partial days.

The per-task tables are sorted by task_id first, so a task's rows are one range, and
end with event_id, so duplicates of one event share the whole key. `task_outcomes` is
sorted by (task_id, occurred_at, event_id): each task's winner is its first row, which
`LIMIT 1 BY task_id` reads in key order without aggregating.

Rows carry `event_id` and `schema_version`. `create_schema` runs at every start: it adds
the columns, skip indexes and projections a table lacks (a table created by an older
version; a projection is built for the existing rows by a background mutation, so the
start does not wait for it), fills the usage ledger of a store that predates it from its
outcomes (one `INSERT … SELECT`, once: the ledger's comment marks it done) and sets the
body TTL.
Bodies (`events.body`, `task_submissions.request_body`, `task_outcomes.response_body`)
may age out: with a retention of N days, a column TTL replaces a body with "" once its
row's event is N days old (ClickHouse applies it when it merges parts). Other changes
of the derived tables' DDL are not migrated: drop them and rebuild them from `events`
(`projections.rebuild_from_archive`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from string import Template

from clickhouse_connect.driver.client import Client

from projections.rows import (
    DispatchRow,
    EventRow,
    LedgerRow,
    OutcomeRow,
    RequeueRow,
    RollupRow,
    Row,
    SubmissionRow,
)
from projections.store import identifier, run_command, run_query

_TIME = "DateTime64(6, 'UTC')"
BY_TASK = "by_task"
"""The projection of `task_submissions` sorted by task id."""
BY_END = "by_end"
"""The projection of `usage_ledger` sorted by response time."""
_REBUILD_PROJECTIONS = "deduplicate_merge_projection_mode = 'rebuild'"
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
    engine: str = "ReplacingMergeTree"
    projections: tuple[str, ...] = ()
    """`name (SELECT … ORDER BY …)`: another sort order of (some of) the columns, kept by
    ClickHouse beside the table's own and chosen by the optimizer when it reads less."""
    settings: tuple[str, ...] = ()

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
        lines += [f"PROJECTION {projection}" for projection in self.projections]
        body = ",\n    ".join(lines)
        settings = f" SETTINGS {', '.join(self.settings)}" if self.settings else ""
        return (
            f"CREATE TABLE IF NOT EXISTS {identifier(database)}.{identifier(self.name)} (\n"
            f"    {body}\n) ENGINE = {self.engine} ORDER BY ({', '.join(self.order_by)})"
            f"{settings}"
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
    body="request_body",
    body_time="submitted_at",
    # A task's place by its id, one granule of a second sort order: the details, statuses
    # and cursors find the task's row there, then read it by the table's own key.
    projections=(
        f"{BY_TASK} (SELECT task_id, workspace_id, submitted_at, event_id ORDER BY task_id)",
    ),
    # A merge that collapses replayed rows rebuilds the projection's part (ClickHouse
    # refuses projections on a ReplacingMergeTree without saying what to do then).
    settings=(_REBUILD_PROJECTIONS,),
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

LEDGER = Table(
    "usage_ledger",
    LedgerRow,
    {
        "task_id": "String",
        "event_id": "String",
        "delta": "Int64",
        "ended_at": _TIME,
        "workspace_id": "String",
        "node_id": "String",
        "gpu_type": "LowCardinality(String)",
        "revision": "Int64",
        "gpu_us": "Int64",
    },
    order_by=("task_id", "event_id"),
    # Plain MergeTree: entries are never collapsed, so the sum of a task's entries is what
    # the rollup counted for it, duplicates included (the writer corrects those).
    engine="MergeTree",
    # Usage over a window that does not start and end at midnight (UTC) adds the entries
    # of its partial days, read by response time.
    projections=(f"{BY_END} (SELECT * ORDER BY ended_at)",),
)
USAGE_DAILY = Table(
    "usage_daily",
    RollupRow,
    {
        "day": "Date",
        "workspace_id": "String",
        "node_id": "String",
        "gpu_type": "LowCardinality(String)",
        "revision": "Int64",
        "tasks": "Int64",
        "gpu_us": "Int64",
    },
    order_by=("day", "workspace_id", "node_id", "gpu_type", "revision"),
    engine="SummingMergeTree",
)
USAGE_VIEW = "usage_daily_mv"
"""The materialized view that adds each insert into the ledger to the daily rollup."""
_USAGE_VIEW_DDL = Template(
    "CREATE MATERIALIZED VIEW IF NOT EXISTS $db.$view TO $db.$rollup AS"
    " SELECT toDate(ended_at) AS day, workspace_id, node_id, gpu_type, revision,"
    " sum(delta) AS tasks, sum(delta * gpu_us) AS gpu_us FROM $db.$ledger"
    " GROUP BY day, workspace_id, node_id, gpu_type, revision"
)
LEDGER_FILLED = "filled"
"""The ledger's table comment once it holds every task's winner (`_fill_ledger`)."""
# One entry per task whose first terminal event is a completion.
_FILL_LEDGER = Template(
    "INSERT INTO $db.$ledger (task_id, event_id, delta, ended_at, workspace_id, node_id,"
    " gpu_type, revision, gpu_us)"
    " SELECT task_id, event_id, 1, ended_at, workspace_id, node_id, gpu_type, revision, gpu_us"
    " FROM (SELECT task_id, event_id, kind, ended_at, workspace_id, node_id, gpu_type,"
    "  revision, gpu_us FROM $db.$outcomes ORDER BY task_id, occurred_at, event_id"
    "  LIMIT 1 BY task_id) WHERE kind = 'completed'"
)

TABLES: tuple[Table, ...] = (EVENTS, SUBMISSIONS, DISPATCHES, REQUEUES, OUTCOMES)
"""Every projection table."""
DERIVED: tuple[Table, ...] = tuple(table for table in TABLES if table is not EVENTS)
"""The tables derived from the archive (`events`)."""
TABLE_OF: Mapping[type[Row], Table] = {table.row: table for table in TABLES}
"""The table each row class goes to."""
TABLE_NAMED: Mapping[str, Table] = {table.name: table for table in TABLES}
"""Every table by name."""
ROLLUPS: tuple[Table, ...] = (LEDGER, USAGE_DAILY)
"""The usage ledger and its rollup: derived too, but written by the writer's own reads
(the ledger) and a materialized view (the rollup), not from an event's rows alone."""
ALL_TABLES: tuple[Table, ...] = (*TABLES, *ROLLUPS)
"""Every table `create_schema` makes."""

_COLUMNS = "SELECT table, name FROM system.columns WHERE database = {db:String}"
_INDEXES = "SELECT table, name FROM system.data_skipping_indices WHERE database = {db:String}"
_PROJECTIONS = "SELECT table, name FROM system.projections WHERE database = {db:String}"
_CREATE_QUERIES = "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}"
_COMMENT = (
    "SELECT comment FROM system.tables WHERE database = {db:String} AND name = {table:String}"
)
_RETENTION_DAYS = re.compile(r"toIntervalDay\((\d+)\)")

log = logging.getLogger(__name__)


def create_schema(client: Client, database: str, *, body_retention_days: int | None = None) -> None:
    """Make `database` hold every table as declared: create what does not exist, add the
    columns, skip indexes and projections an existing table lacks, fill the usage ledger
    of a store that predates it, and set the TTL of the body columns to
    `body_retention_days` (None: bodies are kept; a TTL in force is removed). Idempotent,
    and cheap when nothing changes: a TTL is altered only when it differs (ClickHouse
    then rewrites the body columns once, to apply it to the rows already stored), a
    projection added to a table is built for its existing parts in the background, and
    the ledger is filled once, by one `INSERT … SELECT` over the outcomes."""
    if body_retention_days is not None and body_retention_days < 1:
        raise ValueError(f"body_retention_days must be >= 1, got {body_retention_days}")
    db = identifier(database)
    run_command(client, f"CREATE DATABASE IF NOT EXISTS {db}")
    for table in ALL_TABLES:
        run_command(client, table.ddl(db))
    run_command(client, _USAGE_VIEW_DDL.substitute(
        db=db, view=USAGE_VIEW, rollup=USAGE_DAILY.name, ledger=LEDGER.name
    ))  # fmt: skip
    _add_missing_columns(client, db)
    _add_missing_indexes(client, db)
    _add_missing_projections(client, db)
    _fill_ledger(client, db)
    _set_body_ttl(client, db, body_retention_days)


def rollup_ready(client: Client, database: str) -> bool:
    """Whether the usage ledger and rollup of `database` hold every task (`create_schema`
    filled them); until then usage is answered from the outcomes."""
    rows = run_query(client, _COMMENT, {"db": identifier(database), "table": LEDGER.name})
    return bool(rows) and rows[0][0] == LEDGER_FILLED


def _fill_ledger(client: Client, db: str) -> None:
    """A ledger not marked filled (just created, or its filling was interrupted) is
    emptied with its rollup and filled from the outcomes: each task's first terminal
    event, when it is a completion. The mark is set last, so an interrupted fill is done
    again at the next start. Runs before the projector writes (`Projector.run`)."""
    if rollup_ready(client, db):
        return
    for table in (LEDGER, USAGE_DAILY):
        run_command(client, f"TRUNCATE TABLE IF EXISTS {db}.{table.name}")
    run_command(client, _FILL_LEDGER.substitute(db=db, ledger=LEDGER.name, outcomes=OUTCOMES.name))
    run_command(client, f"ALTER TABLE {db}.{LEDGER.name} MODIFY COMMENT '{LEDGER_FILLED}'")
    log.info("filled the usage ledger of %s from its outcomes", db)


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
    for table in ALL_TABLES:
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
    for table in ALL_TABLES:
        for index in table.indexes:
            name = index.split()[0]
            if (table.name, name) in present:
                continue
            run_command(client, f"ALTER TABLE {db}.{table.name} ADD INDEX IF NOT EXISTS {index}")
            run_command(client, f"ALTER TABLE {db}.{table.name} MATERIALIZE INDEX {name}")


def _add_missing_projections(client: Client, db: str) -> None:
    """Projections a table created by an older version lacks. Their parts for the rows
    already stored are built by a mutation in the background (`MATERIALIZE PROJECTION`
    returns at once): until it is done, queries read the parts without it as before."""
    present = {(t, p) for t, p in run_query(client, _PROJECTIONS, {"db": db})}
    for table in ALL_TABLES:
        for projection in table.projections:
            name = projection.split()[0]
            if (table.name, name) in present:
                continue
            if table.settings:
                settings = ", ".join(table.settings)
                run_command(client, f"ALTER TABLE {db}.{table.name} MODIFY SETTING {settings}")
            run_command(
                client, f"ALTER TABLE {db}.{table.name} ADD PROJECTION IF NOT EXISTS {projection}"
            )
            run_command(client, f"ALTER TABLE {db}.{table.name} MATERIALIZE PROJECTION {name}")


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


def drop_schema(client: Client, database: str, tables: Sequence[Table] = ALL_TABLES) -> None:
    """Drop `tables` (by default every projection table, the archive included) of
    `database` (the database itself stays). The rollup's view goes with the ledger."""
    if LEDGER in tables:
        run_command(client, f"DROP VIEW IF EXISTS {identifier(database)}.{USAGE_VIEW} SYNC")
    for table in tables:
        run_command(
            client, f"DROP TABLE IF EXISTS {identifier(database)}.{identifier(table.name)} SYNC"
        )
