"""ClickHouse read models folded from the event log: DDL, pure `rows_for(event)`, the
batched writer, the projector role and the read queries behind the HTTP API."""

from projections.apply import rows_for
from projections.errors import (
    InvalidName,
    InvalidQuery,
    ProjectionError,
    StoreError,
    UnknownCursor,
)
from projections.projector import GROUP, Projector, ProjectorStats, rebuild
from projections.queries import (
    GroupBy,
    event_count,
    task_count,
    task_detail,
    task_list,
    task_status,
    usage,
)
from projections.rows import DispatchRow, EventRow, OutcomeRow, RequeueRow, Row, SubmissionRow
from projections.schema import TABLES, Table, create_schema, drop_schema
from projections.store import connect
from projections.views import TaskDetail, TaskState, TaskStatus, UsageRow
from projections.writer import ProjectionWriter

__all__ = [
    "GROUP",
    "TABLES",
    "DispatchRow",
    "EventRow",
    "GroupBy",
    "InvalidName",
    "InvalidQuery",
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
    "TaskState",
    "TaskStatus",
    "UnknownCursor",
    "UsageRow",
    "connect",
    "create_schema",
    "drop_schema",
    "event_count",
    "rebuild",
    "rows_for",
    "task_count",
    "task_detail",
    "task_list",
    "task_status",
    "usage",
]
