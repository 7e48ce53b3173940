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
from datetime import UTC, datetime
from string import Template
from typing import Any, Literal, TypeVar

from clickhouse_connect.driver.client import Client

from projections.apply import utc
from projections.errors import InvalidQuery, UnknownCursor
from projections.rows import DispatchRow, OutcomeRow, RequeueRow, Row, SubmissionRow
from projections.schema import DISPATCHES, EVENTS, OUTCOMES, REQUEUES, SUBMISSIONS, Table
from projections.store import identifier, run_query
from projections.views import (
    DelayBucket,
    TaskDetail,
    TaskFailure,
    TaskState,
    TaskStatus,
    TaskSummary,
    UsageRow,
    build_detail,
    build_status,
)

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
_IN_RANGE = (
    "submitted_at >= {start:DateTime64(6, 'UTC')} AND submitted_at < {end:DateTime64(6, 'UTC')}"
)
# The submissions in range (one row per task, its first submission), each joined to its
# winning outcome, its latest dispatch and its latest requeue (by attempt, then time);
# a task with none of one gets that side's defaults ('' and zeros). Its state is decided
# as `state_of` decides it.
_RECENT = Template(
    "SELECT s.task_id, s.owner, s.at, s.first_mode, s.first_param_url,"
    " multiIf(o.kind != '', o.kind, d.last > r.last, 'running', 'queued') AS task_state, d.last.1,"
    " if(o.kind != '' AND o.node_id != '', o.node_id, d.node_id), o.status_code, o.code,"
    " o.ended_at, o.gpu_us"
    " FROM (SELECT task_id, min(submitted_at) AS at,"
    "  argMin(workspace_id, (submitted_at, event_id)) AS owner,"
    "  argMin(mode, (submitted_at, event_id)) AS first_mode,"
    "  argMin(param_url, (submitted_at, event_id)) AS first_param_url"
    "  FROM $submissions WHERE $in_range AND task_id IN ($ids) GROUP BY task_id) AS s"
    " LEFT JOIN (SELECT task_id, kind, node_id, status_code, code, ended_at, gpu_us"
    "  FROM $outcomes WHERE task_id IN ($ids)"
    "  ORDER BY task_id, occurred_at, event_id LIMIT 1 BY task_id) AS o ON o.task_id = s.task_id"
    " LEFT JOIN (SELECT task_id, max((attempt, dispatched_at)) AS last,"
    "  argMax(node_id, (attempt, dispatched_at)) AS node_id"
    "  FROM $dispatches WHERE task_id IN ($ids) GROUP BY task_id) AS d ON d.task_id = s.task_id"
    " LEFT JOIN (SELECT task_id, max((attempt, requeued_at)) AS last"
    "  FROM $requeues WHERE task_id IN ($ids) GROUP BY task_id) AS r ON r.task_id = s.task_id"
    " WHERE $states"
    " ORDER BY s.at DESC, s.task_id DESC LIMIT {limit:UInt64}"
)
_IDS_IN_RANGE = Template("SELECT task_id FROM $submissions WHERE $in_range")
# Without a state to filter by, the page is the newest submissions: only they are joined.
_NEWEST_IN_RANGE = Template(
    "SELECT task_id FROM $submissions WHERE $in_range GROUP BY task_id"
    " ORDER BY min(submitted_at) DESC, task_id DESC LIMIT {limit:UInt64}"
)
_FAILURES = Template(
    "SELECT task_id, workspace_id, kind, ended_at, node_id, status_code, code, reason"
    " FROM (SELECT task_id, workspace_id, kind, ended_at, node_id, status_code, code, reason"
    "  FROM $outcomes WHERE task_id IN (SELECT task_id FROM $outcomes WHERE $failed)"
    "  ORDER BY task_id, occurred_at, event_id LIMIT 1 BY task_id)"
    " WHERE $failed"
    " ORDER BY workspace_id, ended_at DESC, task_id LIMIT {per:UInt64} BY workspace_id"
)
_FAILED = (
    "kind IN ('failed', 'expired') AND ended_at >= {start:DateTime64(6, 'UTC')}"
    " AND ended_at < {end:DateTime64(6, 'UTC')}"
)
# Each task's first dispatch (attempt 1) in range, and its first submission: the wait
# between them, bucketed by the dispatch's time.
_DELAY = Template(
    "SELECT intDiv(toUnixTimestamp(d.at), {bucket:UInt32}) * {bucket:UInt32} AS bucket,"
    " count() AS tasks, avg(wait) AS avg_s, quantileExact(0.9)(wait) AS p90_s, max(wait)"
    " FROM (SELECT d.at AS at,"
    "  greatest(toUnixTimestamp64Micro(d.at) - toUnixTimestamp64Micro(s.at), 0) / 1e6 AS wait"
    "  FROM (SELECT task_id, min(dispatched_at) AS at FROM $dispatches WHERE $first"
    "   GROUP BY task_id) AS d"
    "  INNER JOIN (SELECT task_id, min(submitted_at) AS at FROM $submissions"
    "   WHERE task_id IN (SELECT task_id FROM $dispatches WHERE $first) $and_ws"
    "   GROUP BY task_id) AS s ON s.task_id = d.task_id) AS d"
    " GROUP BY bucket ORDER BY bucket"
)
_FIRST_DISPATCH = (
    "attempt = 1 AND dispatched_at >= {start:DateTime64(6, 'UTC')}"
    " AND dispatched_at < {end:DateTime64(6, 'UTC')}"
)

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


def recent_tasks(
    client: Client,
    database: str,
    start: datetime,
    end: datetime,
    *,
    workspace_id: str | None = None,
    states: Sequence[TaskState] = (),
    limit: int = 100,
) -> list[TaskSummary]:
    """The tasks submitted in [start, end), of every workspace or of `workspace_id`, in
    one of `states` (any when empty), newest first (by submission time, then task id
    descending), at most `limit`."""
    if limit < 0:
        raise InvalidQuery(f"limit must be >= 0, got {limit}")
    params: dict[str, Any] = {"start": utc(start), "end": utc(end), "limit": limit}
    in_range = _IN_RANGE
    if workspace_id is not None:
        params["ws"] = workspace_id
        in_range += " AND workspace_id = {ws:String}"
    submissions = _name(database, SUBMISSIONS)
    where = "1"
    if states:
        params["states"] = [_STATE_NAMES[state] for state in states]
        where = "task_state IN {states:Array(String)}"
    sql = _RECENT.substitute(
        submissions=submissions, in_range=in_range, states=where,
        ids=(_IDS_IN_RANGE if states else _NEWEST_IN_RANGE).substitute(
            submissions=submissions, in_range=in_range
        ),
        outcomes=_name(database, OUTCOMES), dispatches=_name(database, DISPATCHES),
        requeues=_name(database, REQUEUES),
    )  # fmt: skip
    return [_summary(row) for row in run_query(client, sql, params)]


def _summary(row: Sequence[Any]) -> TaskSummary:
    task_id, ws, at, mode, param_url, state, attempts, node_id, status, code, ended, gpu_us = row
    return TaskSummary(
        task_id=task_id, workspace_id=ws, submitted_at=utc(at), mode=mode, param_url=param_url,
        state=_STATE_OF_NAME[state], attempts=int(attempts), node_id=node_id,
        status_code=int(status), code=code,
        ended_at=utc(ended) if state in _ENDED_NAMES else None, gpu_us=int(gpu_us),
    )  # fmt: skip


_STATE_NAMES: dict[TaskState, str] = {
    TaskState.QUEUED: "queued",
    TaskState.RUNNING: "running",
    TaskState.COMPLETED: "completed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
    TaskState.EXPIRED: "expired",
}
_STATE_OF_NAME = {name: state for state, name in _STATE_NAMES.items()}
_ENDED_NAMES = frozenset(("completed", "failed", "cancelled", "expired"))


def recent_failures(
    client: Client, database: str, start: datetime, end: datetime, *, per_workspace: int = 5
) -> list[TaskFailure]:
    """The tasks whose first terminal event, in [start, end), was a failure for good or
    an expiry: each workspace's latest `per_workspace`, by workspace id, then newest
    first."""
    if per_workspace < 0:
        raise InvalidQuery(f"per_workspace must be >= 0, got {per_workspace}")
    params = {"start": utc(start), "end": utc(end), "per": per_workspace}
    sql = _FAILURES.substitute(outcomes=_name(database, OUTCOMES), failed=_FAILED)
    return [
        TaskFailure(task_id, ws, kind, utc(ended_at), node_id, int(status), code, reason)
        for task_id, ws, kind, ended_at, node_id, status, code, reason in run_query(
            client, sql, params
        )
    ]


def queue_delay(
    client: Client,
    database: str,
    start: datetime,
    end: datetime,
    *,
    bucket_s: int = 60,
    workspace_id: str | None = None,
) -> list[DelayBucket]:
    """How long tasks waited in the queue, from submission to first dispatch, grouped by
    the time of that dispatch (in [start, end)) into buckets of `bucket_s` seconds
    aligned on the Unix epoch, of every workspace or of `workspace_id`: per bucket the
    tasks, the mean, the 90th percentile (the exact one: the value at rank floor(0.9 n)
    of the sorted waits) and the longest wait, oldest bucket first; buckets without a
    dispatch are left out. Waits after a retry, and tasks never dispatched, are not
    counted."""
    if bucket_s < 1:
        raise InvalidQuery(f"bucket_s must be >= 1, got {bucket_s}")
    params: dict[str, Any] = {"start": utc(start), "end": utc(end), "bucket": bucket_s}
    and_ws = ""
    if workspace_id is not None:
        params["ws"] = workspace_id
        and_ws = "AND workspace_id = {ws:String}"
    sql = _DELAY.substitute(
        dispatches=_name(database, DISPATCHES), submissions=_name(database, SUBMISSIONS),
        first=_FIRST_DISPATCH, and_ws=and_ws,
    )  # fmt: skip
    return [
        DelayBucket(datetime.fromtimestamp(int(b), UTC), int(n), float(avg), float(p90), float(top))
        for b, n, avg, p90, top in run_query(client, sql, params)
    ]
