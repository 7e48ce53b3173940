"""The read side: task lists, details, statuses and usage, as plain functions of a
client and a database.

SQL templates below hold two kinds of holes: `{name:Type}` values, bound server-side by
ClickHouse, and `$name` for names and fragments that come only from this code (table
names are validated identifiers). Every answer is right before merges — duplicates of
an event are identical rows, and each task's first submission and first terminal event
are chosen explicitly — so replaying events changes no answer. Times passed in are aware
datetimes (a naive one is taken as UTC). Every function raises `StoreError` when the
store fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from string import Template
from typing import Any, Literal, TypeVar

from clickhouse_connect.driver.client import Client

from projections.apply import utc
from projections.errors import InvalidQuery, UnknownCursor
from projections.rows import DispatchRow, OutcomeRow, RequeueRow, Row, SubmissionRow
from projections.schema import DISPATCHES, EVENTS, OUTCOMES, REQUEUES, SUBMISSIONS, Table
from projections.store import identifier, run_query
from projections.views import TaskDetail, TaskStatus, UsageRow, build_detail, build_status

GroupBy = Literal["workspace", "node", "gpu_type", "day", "revision"]
"""How `usage` groups: by workspace id, node id, GPU type or UTC day of the response."""

_LIST = Template(
    "SELECT task_id, min(submitted_at) AS at FROM $submissions"
    " WHERE workspace_id = {ws:String}"
    " AND submitted_at >= {start:DateTime64(6, 'UTC')}"
    " AND submitted_at < {end:DateTime64(6, 'UTC')}"
    " $and_task GROUP BY task_id $having ORDER BY at, task_id $limit"
)
_CURSOR_HAVING = "HAVING (at, task_id) > ({after_at:DateTime64(6, 'UTC')}, {after:String})"
_FIRST_ROW = Template(
    "SELECT $columns FROM $table WHERE task_id = {task_id:String} ORDER BY $time, event_id LIMIT 1"
)
_ALL_ROWS = Template(
    "SELECT $columns FROM $table WHERE task_id = {task_id:String} LIMIT 1 BY event_id"
)
_WORKSPACE_OF = Template(
    "SELECT argMin(workspace_id, (submitted_at, event_id)) FROM $submissions"
    " WHERE task_id = {task_id:String} GROUP BY task_id"
)
# Inner: tasks with a completion in range, each reduced to its first terminal event
# (the sort key makes that the first row of the task); outer: keep those completions.
_USAGE = Template(
    "SELECT $key AS key, count() AS tasks, sum(gpu_us) / 1000000 AS gpu_seconds"
    " FROM (SELECT kind, workspace_id, node_id, gpu_type, ended_at, gpu_us, revision"
    "  FROM $outcomes"
    "  WHERE task_id IN (SELECT task_id FROM $outcomes WHERE $completed)"
    "  ORDER BY task_id, occurred_at, event_id LIMIT 1 BY task_id)"
    " WHERE $completed GROUP BY key ORDER BY key"
)
_COMPLETED = (
    "kind = 'completed' AND ended_at >= {start:DateTime64(6, 'UTC')}"
    " AND ended_at < {end:DateTime64(6, 'UTC')}"
)
_GROUP_KEYS: dict[str, str] = {
    "workspace": "workspace_id",
    "node": "node_id",
    "gpu_type": "gpu_type",
    "day": "toString(toDate(ended_at))",
    "revision": "concat(workspace_id, '@', toString(revision))",
}
_COUNT = Template("SELECT uniqExact($column) FROM $table")

_R = TypeVar("_R", bound=Row)


def _name(database: str, table: Table) -> str:
    return f"{identifier(database)}.{identifier(table.name)}"


def _load(row_type: type[_R], table: Table, values: Sequence[Any]) -> _R:
    """A row value from a result row selected as `table.columns` (times made aware)."""
    fields: dict[str, Any] = {}
    for column, value in zip(table.columns, values, strict=True):
        if isinstance(value, datetime):
            value = utc(value)
        elif isinstance(value, list):
            value = tuple(value)
        fields[column] = value
    return row_type(**fields)


ListEntry = tuple[datetime, str]
"""A task's place in its workspace's list: (submission time, task id), in list order."""


def task_list(
    client: Client,
    database: str,
    workspace_id: str,
    start: datetime,
    end: datetime,
    *,
    limit: int | None = None,
    after: str | None = None,
) -> list[str]:
    """Task ids of `workspace_id` submitted in [start, end), by submission time, then
    task id. Paging: `limit` caps the page; `after` is the cursor, the last task id of the
    previous page (same workspace and range), and the page resumes strictly after it.
    An `after` that names no task of this list raises `UnknownCursor`."""
    position = None
    if after is not None:
        at = list_position(client, database, workspace_id, start, end, after)
        if at is None:
            raise UnknownCursor(f"cursor {after!r} is not a task of this list")
        position = (at, after)
    entries = task_list_entries(
        client, database, workspace_id, start, end, limit=limit, after=position
    )
    return [task_id for _, task_id in entries]


def task_list_entries(
    client: Client,
    database: str,
    workspace_id: str,
    start: datetime,
    end: datetime,
    *,
    limit: int | None = None,
    after: ListEntry | None = None,
) -> list[ListEntry]:
    """Like `task_list`, as (submission time, task id) pairs, resuming strictly after the
    list position `after` (which need not be a task of this store)."""
    if limit is not None and limit < 0:
        raise InvalidQuery(f"limit must be >= 0, got {limit}")
    params: dict[str, Any] = {"ws": workspace_id, "start": utc(start), "end": utc(end)}
    holes = {"submissions": _name(database, SUBMISSIONS), "and_task": "", "having": ""}
    holes["limit"] = "" if limit is None else "LIMIT {limit:UInt64}"
    if limit is not None:
        params["limit"] = limit
    if after is not None:
        params["after_at"], params["after"] = utc(after[0]), after[1]
        holes["having"] = _CURSOR_HAVING
    rows = run_query(client, _LIST.substitute(holes), params)
    return [(utc(at), task_id) for task_id, at in rows]


def list_position(
    client: Client, database: str, workspace_id: str, start: datetime, end: datetime, task_id: str
) -> datetime | None:
    """The list time of `task_id` in `workspace_id`'s list of [start, end), or None when
    it is not a task of that list."""
    holes = {"submissions": _name(database, SUBMISSIONS), "having": "", "limit": "",
             "and_task": "AND task_id = {after:String}"}  # fmt: skip
    params = {"ws": workspace_id, "start": utc(start), "end": utc(end), "after": task_id}
    rows = run_query(client, _LIST.substitute(holes), params)
    return utc(rows[0][1]) if rows else None


def task_detail(client: Client, database: str, task_id: str) -> TaskDetail | None:
    """The detail of `task_id` (every `taskInfo` field), or None if it was never
    submitted. The first submission and the first terminal event win."""
    submission = _first(client, database, SUBMISSIONS, SubmissionRow, task_id, "submitted_at")
    if submission is None:
        return None
    outcome = _first(client, database, OUTCOMES, OutcomeRow, task_id, "occurred_at")
    dispatches, requeues = _attempts(client, database, task_id, requeues_too=outcome is None)
    return build_detail(submission, outcome, dispatches, requeues)


def task_status(client: Client, database: str, task_id: str) -> TaskStatus | None:
    """The state and result of `task_id`, or None if it was never submitted."""
    sql = _WORKSPACE_OF.substitute(submissions=_name(database, SUBMISSIONS))
    rows = run_query(client, sql, {"task_id": task_id})
    if not rows:
        return None
    outcome = _first(client, database, OUTCOMES, OutcomeRow, task_id, "occurred_at")
    dispatches, requeues = _attempts(client, database, task_id, requeues_too=outcome is None)
    return build_status(task_id, rows[0][0], outcome, dispatches, requeues)


def _first(
    client: Client, database: str, table: Table, row_type: type[_R], task_id: str, time: str
) -> _R | None:
    """The task's earliest row of `table` by (`time`, event_id)."""
    sql = _FIRST_ROW.substitute(
        columns=", ".join(table.columns), table=_name(database, table), time=time
    )
    rows = run_query(client, sql, {"task_id": task_id})
    return _load(row_type, table, rows[0]) if rows else None


def _attempts(
    client: Client, database: str, task_id: str, *, requeues_too: bool
) -> tuple[list[DispatchRow], list[RequeueRow]]:
    dispatches = _all(client, database, DISPATCHES, DispatchRow, task_id)
    requeues = _all(client, database, REQUEUES, RequeueRow, task_id) if requeues_too else []
    return dispatches, requeues


def _all(client: Client, database: str, table: Table, row_type: type[_R], task_id: str) -> list[_R]:
    """The task's rows of `table`, each event once."""
    sql = _ALL_ROWS.substitute(columns=", ".join(table.columns), table=_name(database, table))
    return [_load(row_type, table, row) for row in run_query(client, sql, {"task_id": task_id})]


def usage(
    client: Client,
    database: str,
    group_by: GroupBy,
    start: datetime,
    end: datetime,
    workspace_id: str | None = None,
) -> list[UsageRow]:
    """Completed tasks — their first terminal event is a `TaskCompleted` — whose response
    time is in [start, end), optionally of one workspace, grouped by `group_by` (day as
    "YYYY-MM-DD"), ordered by key: (key, tasks, GPU seconds)."""
    key = _GROUP_KEYS.get(group_by)
    if key is None:
        raise InvalidQuery(f"group_by must be one of {sorted(_GROUP_KEYS)}, got {group_by!r}")
    params: dict[str, Any] = {"start": utc(start), "end": utc(end)}
    completed = _COMPLETED
    if workspace_id is not None:
        params["ws"] = workspace_id
        completed += " AND workspace_id = {ws:String}"
    sql = _USAGE.substitute(key=key, outcomes=_name(database, OUTCOMES), completed=completed)
    rows = run_query(client, sql, params)
    return [UsageRow(str(k), int(n), float(s)) for k, n, s in rows]


def event_count(client: Client, database: str) -> int:
    """How many distinct events the raw log holds."""
    sql = _COUNT.substitute(column="event_id", table=_name(database, EVENTS))
    return int(run_query(client, sql)[0][0])


def task_count(client: Client, database: str) -> int:
    """How many distinct tasks were submitted."""
    sql = _COUNT.substitute(column="task_id", table=_name(database, SUBMISSIONS))
    return int(run_query(client, sql)[0][0])
