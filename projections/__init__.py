"""ClickHouse read models folded from the event log: DDL, pure `rows_for(event)`, the
batched writer, the projector role, the archive (the raw events table, from which the
other tables are rebuilt) and the read queries behind the HTTP API."""

from projections.apply import rows_for
from projections.archive import (
    archived_envelope,
    archived_history,
    rebuild_from_archive,
    split_archived_bodies,
)
from projections.errors import (
    InvalidName,
    InvalidQuery,
    ProjectionError,
    StoreError,
    UnknownCursor,
)
from projections.projector import GROUP, Projector, ProjectorStats
from projections.queries import (
    GroupBy,
    ListEntry,
    event_count,
    list_position,
    node_usage,
    queue_delay,
    recent_failures,
    recent_tasks,
    task_count,
    task_detail,
    task_list,
    task_list_entries,
    task_status,
    usage,
    usage_raw,
)
from projections.rows import DispatchRow, EventRow, OutcomeRow, RequeueRow, Row, SubmissionRow
from projections.schema import (
    DERIVED,
    ROLLUPS,
    TABLES,
    Table,
    body_retention,
    create_schema,
    drop_schema,
    rollup_ready,
)
from projections.store import connect
from projections.views import (
    DelayBucket,
    NodeUsageRow,
    TaskDetail,
    TaskFailure,
    TaskState,
    TaskStatus,
    TaskSummary,
    UsageRow,
)
from projections.writer import ProjectionWriter

__all__ = [
    "DERIVED",
    "GROUP",
    "ROLLUPS",
    "TABLES",
    "DelayBucket",
    "DispatchRow",
    "EventRow",
    "GroupBy",
    "InvalidName",
    "InvalidQuery",
    "ListEntry",
    "NodeUsageRow",
    "OutcomeRow",
    "ProjectionError",
    "ProjectionWriter",
    "Projector",
    "ProjectorStats",
    "RequeueRow",
    "Row",
    "StoreError",
    "SubmissionRow",
    "Table",
    "TaskDetail",
    "TaskFailure",
    "TaskState",
    "TaskStatus",
    "TaskSummary",
    "UnknownCursor",
    "UsageRow",
    "archived_envelope",
    "archived_history",
    "body_retention",
    "connect",
    "create_schema",
    "drop_schema",
    "event_count",
    "list_position",
    "node_usage",
    "queue_delay",
    "rebuild_from_archive",
    "recent_failures",
    "recent_tasks",
    "rollup_ready",
    "rows_for",
    "split_archived_bodies",
    "task_count",
    "task_detail",
    "task_list",
    "task_list_entries",
    "task_status",
    "usage",
    "usage_raw",
]
