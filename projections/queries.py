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
from datetime import UTC, datetime, timedelta
from string import Template
from typing import Any, Literal, TypeVar

from clickhouse_connect.driver.client import Client

from projections.apply import utc
from projections.errors import InvalidQuery, UnknownCursor
from projections.rows import DispatchRow, OutcomeRow, RequeueRow, Row, SubmissionRow
from projections.schema import (
    DISPATCHES,
    EVENTS,
    LEDGER,
    OUTCOMES,
    REQUEUES,
    SUBMISSIONS,
    USAGE_DAILY,
    Table,
    rollup_ready,
)
from projections.store import identifier, run_query
from projections.views import (
    DelayBucket,
    NodeUsageRow,
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

_T = "DateTime64(6, 'UTC')"
_IN_RANGE = "workspace_id = {ws:String} AND submitted_at >= {start:$T} AND submitted_at < {end:$T}"
# A page: the workspace's submissions in key order from the cursor on (one range of the
# primary key, read in order and stopped at the limit: a plain `ORDER BY … LIMIT`, which
# ClickHouse reads in blocks of the limit's size; a `LIMIT BY` in between would not
# stop the read). A task is listed at its first row: copies of a row (replays) and
# later submissions of a listed task are dropped as the rows are read
# (`task_list_entries`), and so are the page's tasks with a row at or before the cursor
# (`_LISTED`: listed already, on an earlier page).
_PAGE = (
    "SELECT task_id, submitted_at FROM $submissions"
    " WHERE $in_range $after ORDER BY submitted_at, task_id $limit"
)
_AFTER = (
    " AND submitted_at >= {after_at:$T}"
    " AND (submitted_at > {after_at:$T} OR task_id > {after:String})"
)
# Which of a page's tasks have a row at or before the cursor: a task submitted twice
# (two events, two times). Looked up by id in the `by_task` projection: as many
# granules as the page's tasks span, at most.
_LISTED = (
    "SELECT DISTINCT task_id FROM $submissions WHERE task_id IN {ids:Array(String)}"
    " AND $in_range AND submitted_at <= {after_at:$T}"
    " AND (submitted_at < {after_at:$T} OR task_id <= {after:String})"
)
# The cursor's place: its task's first submission in the range (the `by_task`
# projection holds every column this reads: one granule).
_POSITION = (
    "SELECT min(submitted_at) FROM $submissions WHERE task_id = {after:String}"
    " AND $in_range GROUP BY task_id"
)
# Everything a task's detail needs, in one round trip (each query's overhead in chdb is
# about a millisecond): its first submission — found by id in the `by_task` projection,
# then read by the table's own key —, its first terminal event, its dispatches and
# requeues (each event once; sorted by task id: one range each).
_FACTS = (
    "SELECT (SELECT groupArray(($submission_columns)) FROM (SELECT $submission_columns"
    "  FROM $submissions WHERE task_id = {task_id:String}"
    "  AND (workspace_id, submitted_at, task_id) IN (SELECT workspace_id, submitted_at, task_id"
    "   FROM $submissions WHERE task_id = {task_id:String})"
    "  ORDER BY submitted_at, event_id LIMIT 1)),"
    " (SELECT groupArray(($outcome_columns)) FROM (SELECT $outcome_columns FROM $outcomes"
    "  WHERE task_id = {task_id:String} ORDER BY occurred_at, event_id LIMIT 1)),"
    " (SELECT groupArray(($dispatch_columns)) FROM (SELECT $dispatch_columns FROM $dispatches"
    "  WHERE task_id = {task_id:String} LIMIT 1 BY event_id)),"
    " (SELECT groupArray(($requeue_columns)) FROM (SELECT $requeue_columns FROM $requeues"
    "  WHERE task_id = {task_id:String} LIMIT 1 BY event_id))"
)
# A status needs the submission's workspace only: the projection answers it alone.
_WORKSPACE_COLUMN = "argMin(workspace_id, (submitted_at, event_id))"
_STATUS_FACTS = (
    "SELECT (SELECT groupArray(ws) FROM (SELECT $workspace AS ws FROM $submissions"
    "  WHERE task_id = {task_id:String} GROUP BY task_id)),"
    " (SELECT groupArray(($outcome_columns)) FROM (SELECT $outcome_columns FROM $outcomes"
    "  WHERE task_id = {task_id:String} ORDER BY occurred_at, event_id LIMIT 1)),"
    " (SELECT groupArray(($dispatch_columns)) FROM (SELECT $dispatch_columns FROM $dispatches"
    "  WHERE task_id = {task_id:String} LIMIT 1 BY event_id)),"
    " (SELECT groupArray(($requeue_columns)) FROM (SELECT $requeue_columns FROM $requeues"
    "  WHERE task_id = {task_id:String} LIMIT 1 BY event_id))"
)
# The reference answer, from the outcomes alone (each task's first terminal event, kept
# when it is a completion in range): what the rollup must equal. Inner: tasks with a
# completion in range, each reduced to its first terminal event (the sort key makes that
# the first row of the task); outer: keep those completions.
_USAGE_RAW = Template(
    "SELECT $keys, count() AS tasks, sum(gpu_us) / 1000000 AS gpu_seconds"
    " FROM (SELECT kind, workspace_id, node_id, gpu_type, ended_at, gpu_us, revision"
    "  FROM $outcomes"
    "  WHERE task_id IN (SELECT task_id FROM $outcomes WHERE $completed)"
    "  ORDER BY task_id, occurred_at, event_id LIMIT 1 BY task_id)"
    " WHERE $completed GROUP BY $names ORDER BY $names"
)
_COMPLETED = (
    "kind = 'completed' AND ended_at >= {start:DateTime64(6, 'UTC')}"
    " AND ended_at < {end:DateTime64(6, 'UTC')}"
)
# The rollup over the window's whole UTC days, and the ledger (by response time, its
# `by_end` projection) over the partial days at either end; keys whose count is back to
# zero (a completion superseded) are no keys.
_USAGE = Template(
    "SELECT $names, sum(t) AS tasks, sum(g) / 1000000 AS gpu_seconds FROM ("
    " SELECT $rollup_keys, tasks AS t, gpu_us AS g FROM $rollup"
    "  WHERE day >= {first_day:Date32} AND day < {end_day:Date32} $filters"
    " UNION ALL"
    " SELECT $ledger_keys, delta AS t, delta * gpu_us AS g FROM $ledger"
    "  WHERE (ended_at >= {start:$T} AND ended_at < {head_end:$T}"
    "   OR ended_at >= {tail_start:$T} AND ended_at < {end:$T}) $filters"
    ") GROUP BY $names HAVING tasks > 0 ORDER BY $names"
)
_DAY_OF_END = "toString(toDate(ended_at))"
# Each grouping as (expression over the outcomes and the ledger, over the rollup).
_GROUP_KEYS: dict[str, tuple[str, str]] = {
    "workspace": ("workspace_id", "workspace_id"),
    "node": ("node_id", "node_id"),
    "gpu_type": ("gpu_type", "gpu_type"),
    "day": (_DAY_OF_END, "toString(day)"),
    "revision": ("concat(workspace_id, '@', toString(revision))",) * 2,
}
# Groupings for the node's own view (`node_usage`): a workspace and its revision apart.
_PART_KEYS: dict[str, tuple[str, str]] = {
    "day": _GROUP_KEYS["day"],
    "workspace_id": ("workspace_id", "workspace_id"),
    "revision_number": ("revision", "revision"),
}
_COUNT = Template("SELECT uniqExact($column) FROM $table")
TASK_LIFE_BOUND = timedelta(days=8)
"""Longer than any task lives: a TTL of at most a day, then at most three attempts of at
most a day each, with their waits. A task id starts with its submission time
(`YYYYMMDD_HH_MM_SS`), so the operator's reads by submission, dispatch or end time also
bound `task_id` (the sort key of the per-task tables, and of `by_task`): each reads the
tasks of its window and of this bound before it, never the whole history."""
_SUBMITTED_IN_RANGE = (
    "submitted_at >= {start:DateTime64(6, 'UTC')} AND submitted_at < {end:DateTime64(6, 'UTC')}"
    " AND task_id >= {since_id:String}"
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
    " AND ended_at < {end:DateTime64(6, 'UTC')} AND task_id >= {since_id:String}"
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
    " AND dispatched_at < {end:DateTime64(6, 'UTC')} AND task_id >= {since_id:String}"
)


def _id_prefix(moment: datetime) -> str:
    """The smallest task id issued at `moment` or later (ids start with their time)."""
    return f"{utc(moment):%Y%m%d_%H_%M_%S}"


_R = TypeVar("_R", bound=Row)


def _name(database: str, table: Table) -> str:
    return f"{identifier(database)}.{identifier(table.name)}"


def _load(
    row_type: type[_R],
    table: Table,
    values: Sequence[Any],
    columns: Sequence[str] | None = None,
) -> _R:
    """A row value from a result row selected as `columns` (default: all the table's),
    times made aware; a column not selected holds its type's empty value."""
    fields: dict[str, Any] = {}
    for column, value in zip(columns or table.columns, values, strict=True):
        if isinstance(value, datetime):
            value = utc(value)
        elif isinstance(value, list):
            value = tuple(value)
        fields[column] = value
    for column in table.columns:
        if column not in fields:
            fields[column] = _empty(table.types[column])
    return row_type(**fields)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _empty(kind: str) -> Any:
    """The value a row holds for a column of ClickHouse type `kind` it was not read."""
    if kind.startswith("Nullable"):
        return None
    if kind.startswith("Array"):
        return ()
    if kind.startswith(("Int", "UInt")):
        return 0
    if kind.startswith("Float"):
        return 0.0
    if kind.startswith("DateTime"):
        return _EPOCH
    return ""


# What the views read of each fact (`build_detail`, `build_status`, `state_of`,
# `serving_node`): a point lookup reads a whole granule of every column it selects, so
# it selects these only.
_DETAIL_COLUMNS: dict[str, tuple[str, ...]] = {
    "submission": ("task_id", "workspace_id", "submitted_at", "seq", "userkey", "btc_address",
                   "method", "request_url", "user_ip", "request_body"),
    "outcome": ("kind", "attempt", "node_id", "node_ip", "node_address", "status_code",
                "response_body", "body_encoding", "ended_at", "gpu_us", "code", "reason"),
    "dispatch": ("event_id", "attempt", "dispatched_at", "node_id", "node_ip", "node_address"),
    "requeue": ("attempt", "requeued_at"),
}  # fmt: skip


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
    list position `after` (which need not be a task of this store). With a limit, the
    page is one range of the primary key read in order and stopped there: its cost
    does not grow with the workspace's history."""
    if limit is not None and limit < 0:
        raise InvalidQuery(f"limit must be >= 0, got {limit}")
    params: dict[str, Any] = {"ws": workspace_id, "start": utc(start), "end": utc(end)}
    if after is not None:
        params["after_at"], params["after"] = utc(after[0]), after[1]
    fetch = limit
    while True:
        sql = _sql(
            _PAGE,
            after=_AFTER if after is not None else "",
            limit="" if fetch is None else "LIMIT {limit:UInt64}",
            submissions=_name(database, SUBMISSIONS),
        )
        if fetch is not None:
            params["limit"] = fetch
        rows = run_query(client, sql, params)
        seen = _listed_before(client, database, params, rows) if after is not None else set()
        entries: list[ListEntry] = []
        for task_id, at in rows:
            if task_id not in seen:
                entries.append((utc(at), task_id))
            seen.add(task_id)
        if fetch is None or len(rows) < fetch or len(entries) >= limit:  # type: ignore[operator]
            return entries[:limit]
        fetch += max(limit - len(entries), 1)  # type: ignore[operator]  # rows dropped: read on


def _listed_before(
    client: Client, database: str, params: dict[str, Any], rows: Sequence[Sequence[Any]]
) -> set[str]:
    """The tasks of a page's `rows` that have a submission at or before its cursor."""
    if not rows:
        return set()
    sql = _sql(_LISTED, submissions=_name(database, SUBMISSIONS))
    ids = sorted({row[0] for row in rows})
    return {row[0] for row in run_query(client, sql, {**params, "ids": ids})}


def list_position(
    client: Client, database: str, workspace_id: str, start: datetime, end: datetime, task_id: str
) -> datetime | None:
    """The list time of `task_id` in `workspace_id`'s list of [start, end), or None when
    it is not a task of that list."""
    sql = _sql(_POSITION, submissions=_name(database, SUBMISSIONS))
    params = {"ws": workspace_id, "start": utc(start), "end": utc(end), "after": task_id}
    rows = run_query(client, sql, params)
    return utc(rows[0][0]) if rows else None


def task_detail(client: Client, database: str, task_id: str) -> TaskDetail | None:
    """The detail of `task_id` (every `taskInfo` field), or None if it was never
    submitted. The first submission and the first terminal event win. One query."""
    sql = _sql(_FACTS, **_fact_holes(database))
    submissions, outcomes, dispatches, requeues = run_query(client, sql, {"task_id": task_id})[0]
    if not submissions:
        return None
    read = _DETAIL_COLUMNS
    submission = _load(SubmissionRow, SUBMISSIONS, submissions[0], read["submission"])
    outcome = _load(OutcomeRow, OUTCOMES, outcomes[0], read["outcome"]) if outcomes else None
    return build_detail(submission, outcome, *_attempts(dispatches, requeues, outcome))


def task_status(client: Client, database: str, task_id: str) -> TaskStatus | None:
    """The state and result of `task_id`, or None if it was never submitted. One query."""
    sql = _sql(_STATUS_FACTS, workspace=_WORKSPACE_COLUMN, **_fact_holes(database))
    workspaces, outcomes, dispatches, requeues = run_query(client, sql, {"task_id": task_id})[0]
    if not workspaces:
        return None
    read = _DETAIL_COLUMNS
    outcome = _load(OutcomeRow, OUTCOMES, outcomes[0], read["outcome"]) if outcomes else None
    return build_status(task_id, workspaces[0], outcome, *_attempts(dispatches, requeues, outcome))


def _sql(template: str, **holes: str) -> str:
    """`template` with its `$` holes filled: first the fragments (which may hold holes
    themselves), then the names and the time type."""
    fragments = Template(template).safe_substitute(holes, in_range=_IN_RANGE)
    fragments = Template(fragments).safe_substitute(holes, in_range=_IN_RANGE)
    return Template(fragments).substitute(holes, T=_T)


def _fact_holes(database: str) -> dict[str, str]:
    return {
        "submissions": _name(database, SUBMISSIONS),
        "outcomes": _name(database, OUTCOMES),
        "dispatches": _name(database, DISPATCHES),
        "requeues": _name(database, REQUEUES),
        **{f"{fact}_columns": ", ".join(columns) for fact, columns in _DETAIL_COLUMNS.items()},
    }


def _attempts(
    dispatches: Sequence[Any], requeues: Sequence[Any], outcome: OutcomeRow | None
) -> tuple[list[DispatchRow], list[RequeueRow]]:
    """The dispatch rows, and the requeue rows (needed only while the task has no
    outcome)."""
    read = _DETAIL_COLUMNS
    loaded = [_load(DispatchRow, DISPATCHES, row, read["dispatch"]) for row in dispatches]
    if outcome is not None:
        return loaded, []
    return loaded, [_load(RequeueRow, REQUEUES, row, read["requeue"]) for row in requeues]


def usage(
    client: Client,
    database: str,
    group_by: GroupBy,
    start: datetime,
    end: datetime,
    workspace_id: str | None = None,
    node_id: str | None = None,
) -> list[UsageRow]:
    """Completed tasks — their first terminal event is a `TaskCompleted` — whose response
    time is in [start, end), optionally of one workspace and/or one node, grouped by
    `group_by` (day as "YYYY-MM-DD"), ordered by key: (key, tasks, GPU seconds). Read
    from the daily rollup (the ledger for partial days), which equals `usage_raw`; from
    the outcomes (`usage_raw`) while a store that predates the rollup is not migrated."""
    key = _GROUP_KEYS.get(group_by)
    if key is None:
        raise InvalidQuery(f"group_by must be one of {sorted(_GROUP_KEYS)}, got {group_by!r}")
    if not rollup_ready(client, database):
        return usage_raw(client, database, group_by, start, end, workspace_id, node_id)
    rows = _usage(client, database, (key,), start, end, workspace_id, node_id)
    return [UsageRow(str(k), int(n), float(s)) for k, n, s in rows]


def usage_raw(
    client: Client,
    database: str,
    group_by: GroupBy,
    start: datetime,
    end: datetime,
    workspace_id: str | None = None,
    node_id: str | None = None,
) -> list[UsageRow]:
    """`usage` computed from the outcomes alone, every task's terminal events read (its
    cost grows with the tasks in the window): the reference the rollup is held to."""
    key = _GROUP_KEYS.get(group_by)
    if key is None:
        raise InvalidQuery(f"group_by must be one of {sorted(_GROUP_KEYS)}, got {group_by!r}")
    rows = _usage_from_outcomes(client, database, (key,), start, end, workspace_id, node_id)
    return [UsageRow(str(k), int(n), float(s)) for k, n, s in rows]


def node_usage(
    client: Client, database: str, node_id: str, start: datetime, end: datetime
) -> list[NodeUsageRow]:
    """What `node_id` served: its completed tasks (as `usage` counts them) with response
    times in [start, end), by UTC day, workspace and workspace revision, in that order."""
    keys = (_PART_KEYS["day"], _PART_KEYS["workspace_id"], _PART_KEYS["revision_number"])
    if rollup_ready(client, database):
        rows = _usage(client, database, keys, start, end, None, node_id)
    else:
        rows = _usage_from_outcomes(client, database, keys, start, end, None, node_id)
    return [NodeUsageRow(str(d), str(w), int(r), int(n), float(s)) for d, w, r, n, s in rows]


def _filters(params: dict[str, Any], workspace_id: str | None, node_id: str | None) -> str:
    where = ""
    if workspace_id is not None:
        params["ws"] = workspace_id
        where += " AND workspace_id = {ws:String}"
    if node_id is not None:
        params["node"] = node_id
        where += " AND node_id = {node:String}"
    return where


def _usage_from_outcomes(
    client: Client,
    database: str,
    keys: Sequence[tuple[str, str]],
    start: datetime,
    end: datetime,
    workspace_id: str | None,
    node_id: str | None,
) -> Sequence[Sequence[Any]]:
    params: dict[str, Any] = {"start": utc(start), "end": utc(end)}
    completed = _COMPLETED + _filters(params, workspace_id, node_id)
    names = [f"k{i}" for i in range(len(keys))]
    sql = _USAGE_RAW.substitute(
        keys=", ".join(f"{raw} AS {n}" for (raw, _), n in zip(keys, names, strict=True)),
        names=", ".join(names),
        outcomes=_name(database, OUTCOMES),
        completed=completed,
    )
    return run_query(client, sql, params)


def _usage(
    client: Client,
    database: str,
    keys: Sequence[tuple[str, str]],
    start: datetime,
    end: datetime,
    workspace_id: str | None,
    node_id: str | None,
) -> Sequence[Sequence[Any]]:
    start, end = utc(start), utc(end)
    first_day, end_day = _whole_days(start, end)
    params: dict[str, Any] = {"start": start, "end": end, "first_day": first_day.date(),
                              "end_day": end_day.date()}  # fmt: skip
    if first_day < end_day:  # the partial days: [start, first_day) and [end_day, end)
        params["head_end"], params["tail_start"] = first_day, end_day
    else:  # no whole day: the ledger alone, over [start, end)
        params["head_end"], params["tail_start"] = end, end
    filters = _filters(params, workspace_id, node_id)
    names = [f"k{i}" for i in range(len(keys))]
    sql = _sql(
        _USAGE.template,
        names=", ".join(names),
        rollup_keys=", ".join(f"{r} AS {n}" for (_, r), n in zip(keys, names, strict=True)),
        ledger_keys=", ".join(f"{raw} AS {n}" for (raw, _), n in zip(keys, names, strict=True)),
        rollup=_name(database, USAGE_DAILY),
        ledger=_name(database, LEDGER),
        filters=filters,
    )
    return run_query(client, sql, params)


def _whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The first UTC midnight at or after `start` and the last at or before `end`."""
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    return first, end.replace(hour=0, minute=0, second=0, microsecond=0)


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
    in_range = _SUBMITTED_IN_RANGE
    params["since_id"] = _id_prefix(start - timedelta(minutes=1))  # clocks of ingresses
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
    params = {"start": utc(start), "end": utc(end), "per": per_workspace,
              "since_id": _id_prefix(start - TASK_LIFE_BOUND)}  # fmt: skip
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
    params: dict[str, Any] = {"start": utc(start), "end": utc(end), "bucket": bucket_s,
                              "since_id": _id_prefix(start - TASK_LIFE_BOUND)}  # fmt: skip
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
