"""The ingress's async view of the ClickHouse projections (queries run in worker threads:
chdb has no async client)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from events import Envelope, topics
from projections import (
    DelayBucket,
    GroupBy,
    ListEntry,
    NodeUsageRow,
    ProjectionError,
    TaskDetail,
    TaskFailure,
    TaskState,
    TaskSummary,
    UnknownCursor,
    UsageRow,
    archived_history,
    list_position,
    node_usage,
    queue_delay,
    recent_failures,
    recent_tasks,
    task_detail,
    task_list_entries,
    task_status,
    usage,
)
from services.ingress.errors import BadRequest, ServiceUnavailable
from services.ingress.taskview import TaskPhase, TaskStatus

_PHASES: dict[TaskState, TaskPhase] = {
    TaskState.QUEUED: "queued",
    TaskState.RUNNING: "running",
    TaskState.COMPLETED: "completed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
    TaskState.EXPIRED: "expired",
}


class TaskStore:
    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.database = database

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, self.client, self.database, *args, **kwargs)
        except UnknownCursor as exc:
            raise BadRequest(str(exc), field="cursor") from exc
        except ProjectionError as exc:
            raise ServiceUnavailable("the task store is unavailable; try again later") from exc

    async def status(self, task_id: str) -> TaskStatus | None:
        found = await self._run(task_status, task_id)
        if found is None:
            return None
        return TaskStatus(
            found.task_id, found.workspace_id, _PHASES[found.state], found.status_code,
            found.response, found.response_encoding, "", found.code, found.reason,
        )  # fmt: skip

    async def detail(self, task_id: str) -> TaskDetail | None:
        result: TaskDetail | None = await self._run(task_detail, task_id)
        return result

    async def history(self, task_id: str) -> list[Envelope]:
        """The task's archived events in time order, without bodies (`archived_history`)."""
        result: list[Envelope] = await self._run(archived_history, topics.TASKS, task_id)
        return result

    async def list_entries(
        self,
        workspace_id: str,
        start: datetime,
        end: datetime,
        limit: int | None,
        after: ListEntry | None,
    ) -> list[ListEntry]:
        """The projected part of a workspace's task list (see `task_list_entries`)."""
        result: list[ListEntry] = await self._run(
            task_list_entries, workspace_id, start, end, limit=limit, after=after
        )
        return result

    async def list_position(
        self, workspace_id: str, start: datetime, end: datetime, task_id: str
    ) -> datetime | None:
        result: datetime | None = await self._run(list_position, workspace_id, start, end, task_id)
        return result

    async def usage(
        self,
        group_by: GroupBy,
        start: datetime,
        end: datetime,
        workspace_id: str | None,
        node_id: str | None = None,
    ) -> list[UsageRow]:
        result: list[UsageRow] = await self._run(usage, group_by, start, end, workspace_id, node_id)
        return result

    async def node_usage(self, node_id: str, start: datetime, end: datetime) -> list[NodeUsageRow]:
        """What `node_id` served, by day, workspace and revision (`node_usage`)."""
        result: list[NodeUsageRow] = await self._run(node_usage, node_id, start, end)
        return result

    async def recent(
        self,
        start: datetime,
        end: datetime,
        *,
        workspace_id: str | None = None,
        states: tuple[TaskState, ...] = (),
        limit: int = 100,
    ) -> list[TaskSummary]:
        """Every workspace's tasks (or one's), newest first (see `recent_tasks`)."""
        result: list[TaskSummary] = await self._run(
            recent_tasks, start, end, workspace_id=workspace_id, states=states, limit=limit
        )
        return result

    async def failures(
        self, start: datetime, end: datetime, per_workspace: int
    ) -> list[TaskFailure]:
        """Each workspace's latest failed or expired tasks (see `recent_failures`)."""
        result: list[TaskFailure] = await self._run(
            recent_failures, start, end, per_workspace=per_workspace
        )
        return result

    async def queue_delay(
        self, start: datetime, end: datetime, bucket_s: int, workspace_id: str | None = None
    ) -> list[DelayBucket]:
        """Queue delay per time bucket (see `projections.queue_delay`)."""
        result: list[DelayBucket] = await self._run(
            queue_delay, start, end, bucket_s=bucket_s, workspace_id=workspace_id
        )
        return result
