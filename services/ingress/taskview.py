"""What an ingress knows of recent tasks from the log: enough to answer `queryTask` for a
task the projections have not caught up with, and to wake a sync request when its task
ends. Pure fold; bounded memory (oldest tasks are forgotten first)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Literal

from events import (
    Event,
    TaskCancelled,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
    is_terminal,
)

TaskPhase = Literal["queued", "running", "completed", "failed", "cancelled", "expired"]


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """The latest known state of a task. For `completed`, `status_code` and the body are
    the container's answer; for `failed`, `code` and `reason` say why."""

    task_id: str
    workspace_id: str
    phase: TaskPhase
    status_code: int = 0
    body: str = ""
    body_encoding: str = "utf-8"
    content_type: str = ""
    code: str = ""
    reason: str = ""

    @property
    def ended(self) -> bool:
        return self.phase not in ("queued", "running")


def fold(current: TaskStatus | None, event: Event) -> TaskStatus | None:
    """The status after `event`; the first terminal event wins."""
    if current is not None and current.ended:
        return current
    match event:
        case TaskSubmitted():
            return current or TaskStatus(event.task_id, event.workspace_id, "queued")
        case TaskDispatched() if current is not None:
            return replace(current, phase="running")
        case TaskRetried() if current is not None:
            return replace(current, phase="queued")
        case TaskCompleted():
            return TaskStatus(
                event.task_id, event.workspace_id, "completed", event.status_code,
                event.response_body, event.body_encoding, event.content_type,
            )  # fmt: skip
        case TaskFailed() if is_terminal(event):
            return TaskStatus(
                event.task_id, event.workspace_id, "failed", event.status_code,
                event.response_body, code=event.code, reason=event.reason,
            )  # fmt: skip
        case TaskCancelled():
            return TaskStatus(event.task_id, event.workspace_id, "cancelled", reason=event.reason)
        case TaskExpired():
            reason = f"no capacity: waited {event.waited_s:.0f}s"
            return TaskStatus(event.task_id, event.workspace_id, "expired", reason=reason)
    return current


@dataclass(slots=True)
class TaskView:
    """Recent task statuses by id, at most `capacity` of them."""

    capacity: int = 200_000
    _tasks: OrderedDict[str, TaskStatus] | None = None

    def __post_init__(self) -> None:
        self._tasks = OrderedDict()

    def apply(self, event: Event) -> TaskStatus | None:
        """Fold `event`; returns the task's new status (None for events of unknown tasks)."""
        assert self._tasks is not None
        task_id = getattr(event, "task_id", None)
        if task_id is None:
            return None
        status = fold(self._tasks.get(task_id), event)
        if status is not None:
            self._tasks[task_id] = status
            self._tasks.move_to_end(task_id)
            if len(self._tasks) > self.capacity:
                self._tasks.popitem(last=False)
        return status

    def get(self, task_id: str) -> TaskStatus | None:
        assert self._tasks is not None
        return self._tasks.get(task_id)
