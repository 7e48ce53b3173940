"""What an ingress knows of recent tasks from the log: enough to answer `queryTask` for a
task the projections have not caught up with, and to wake a sync request when its task
ends. Pure fold; bounded memory (oldest tasks are forgotten first)."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
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
    """Recent task statuses by id, at most `capacity` of them, and how many of them run
    on each node (dispatched and not ended or sent back to the queue)."""

    capacity: int = 200_000
    _tasks: OrderedDict[str, TaskStatus] = field(default_factory=OrderedDict)
    _running_on: dict[str, str] = field(default_factory=dict)
    _per_node: Counter[str] = field(default_factory=Counter)

    def apply(self, event: Event) -> TaskStatus | None:
        """Fold `event`; returns the task's new status (None for events of unknown tasks)."""
        task_id = getattr(event, "task_id", None)
        if task_id is None:
            return None
        status = fold(self._tasks.get(task_id), event)
        if status is None:
            return None
        self._tasks[task_id] = status
        self._tasks.move_to_end(task_id)
        self._track_node(task_id, status, event)
        if len(self._tasks) > self.capacity:
            forgotten, _ = self._tasks.popitem(last=False)
            self._release(forgotten)
        return status

    def _track_node(self, task_id: str, status: TaskStatus, event: Event) -> None:
        if status.phase == "running" and isinstance(event, TaskDispatched):
            self._release(task_id)
            self._running_on[task_id] = event.node_id
            self._per_node[event.node_id] += 1
        elif status.phase != "running":
            self._release(task_id)

    def _release(self, task_id: str) -> None:
        node_id = self._running_on.pop(task_id, None)
        if node_id is not None:
            self._per_node[node_id] -= 1
            if not self._per_node[node_id]:
                del self._per_node[node_id]

    def get(self, task_id: str) -> TaskStatus | None:
        return self._tasks.get(task_id)

    def in_flight(self, node_id: str) -> int:
        """Tasks running on `node_id`, among those this view saw dispatched."""
        return self._per_node.get(node_id, 0)
