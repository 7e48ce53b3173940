"""What an ingress knows of recent tasks from the log: enough to answer `queryTask` for a
task the projections have not caught up with, to list it before they do, and to wake a
sync request when its task ends, and to weigh the request bodies of the tasks not yet
ended against the queue's byte caps. Pure fold; bounded memory (the least recently changed
tasks are forgotten first).

The view starts where its ingress began following the log (its end, at the process's
start): tasks submitted before that are not known to it, nor counted in its bytes."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from sortedcontainers import SortedList

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
from projections import ListEntry

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


def body_bytes(text: str) -> int:
    """The size of a request body as UTF-8, what it takes on the wire and in the log."""
    # isascii() is O(1) on CPython: most bodies are counted without a copy.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class TaskView:
    """Recent task statuses by id, at most `capacity` of them; each workspace's tasks in
    list order (those whose submission time is known); how many run on each node
    (dispatched and not ended or sent back to the queue); and the bytes of the request
    bodies of the tasks not ended (queued or running), per workspace and in all, which a
    task holds from its `TaskSubmitted` until it ends or is forgotten."""

    capacity: int = 200_000
    _tasks: OrderedDict[str, TaskStatus] = field(default_factory=OrderedDict)
    _running_on: dict[str, str] = field(default_factory=dict)
    _per_node: Counter[str] = field(default_factory=Counter)
    _lists: dict[str, SortedList] = field(default_factory=dict)
    _listed_at: dict[str, datetime] = field(default_factory=dict)
    _held: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Task id -> (workspace id, request body bytes), for the tasks not ended."""
    _held_per_workspace: Counter[str] = field(default_factory=Counter)
    _held_total: int = 0
    _phases: Counter[str] = field(default_factory=Counter)
    """Phase -> tasks of this view in it."""

    def apply(self, event: Event, at: datetime | None = None) -> TaskStatus | None:
        """Fold `event`, whose envelope's time is `at` (a `TaskSubmitted`'s is the task's
        submission time, which places it in its workspace's list); returns the task's new
        status (None for events of unknown tasks)."""
        task_id = getattr(event, "task_id", None)
        if task_id is None:
            return None
        before = self._tasks.get(task_id)
        status = fold(before, event)
        if status is None:
            return None
        if before is None or before.phase != status.phase:
            self._phases[status.phase] += 1
            if before is not None:
                self._phases[before.phase] -= 1
        self._tasks[task_id] = status
        self._tasks.move_to_end(task_id)
        self._track_node(task_id, status, event)
        self._track_bytes(status, event)
        if at is not None and isinstance(event, TaskSubmitted):
            self._list(event.workspace_id, task_id, at)
        if len(self._tasks) > self.capacity:
            forgotten, gone = self._tasks.popitem(last=False)
            self._phases[gone.phase] -= 1
            self._release(forgotten)
            self._unhold(forgotten)
            self._unlist(gone)
        return status

    def _list(self, workspace_id: str, task_id: str, at: datetime) -> None:
        if task_id in self._listed_at:
            return  # the first submission places the task
        self._listed_at[task_id] = at
        self._lists.setdefault(workspace_id, SortedList()).add((at, task_id))

    def _unlist(self, status: TaskStatus) -> None:
        at = self._listed_at.pop(status.task_id, None)
        entries = self._lists.get(status.workspace_id)
        if at is not None and entries is not None:
            entries.discard((at, status.task_id))
            if not entries:
                del self._lists[status.workspace_id]

    def listed_at(self, workspace_id: str, task_id: str) -> datetime | None:
        """The list time of `task_id` if this view lists it under `workspace_id`."""
        status = self._tasks.get(task_id)
        if status is None or status.workspace_id != workspace_id:
            return None
        return self._listed_at.get(task_id)

    def listed(
        self,
        workspace_id: str,
        start: datetime,
        end: datetime,
        *,
        after: ListEntry | None = None,
        limit: int | None = None,
    ) -> list[ListEntry]:
        """The workspace's tasks this view lists with a submission time in [start, end),
        in list order, strictly after `after`, at most `limit` of them."""
        entries = self._lists.get(workspace_id)
        if not entries:
            return []
        first = entries.bisect_left((start, ""))
        if after is not None:
            first = max(first, entries.bisect_right(after))
        found: list[ListEntry] = []
        for entry in entries.islice(first):
            if entry[0] >= end or (limit is not None and len(found) >= limit):
                break
            found.append(entry)
        return found

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

    def _track_bytes(self, status: TaskStatus, event: Event) -> None:
        if status.ended:
            self._unhold(status.task_id)
        elif isinstance(event, TaskSubmitted) and status.task_id not in self._held:
            size = body_bytes(event.request_body)
            self._held[status.task_id] = (status.workspace_id, size)
            if size:
                self._held_per_workspace[status.workspace_id] += size
                self._held_total += size

    def _unhold(self, task_id: str) -> None:
        held = self._held.pop(task_id, None)
        if held is None:
            return
        workspace_id, size = held
        self._held_total -= size
        remaining = self._held_per_workspace[workspace_id] - size
        if remaining:
            self._held_per_workspace[workspace_id] = remaining
        else:
            self._held_per_workspace.pop(workspace_id, None)

    def queued_bytes(self, workspace_id: str | None = None) -> int:
        """Bytes of the request bodies of the tasks this view knows not ended (queued or
        running): the workspace's, or every workspace's when `workspace_id` is None."""
        if workspace_id is None:
            return self._held_total
        return self._held_per_workspace.get(workspace_id, 0)

    def get(self, task_id: str) -> TaskStatus | None:
        return self._tasks.get(task_id)

    def counts_by_phase(self) -> dict[str, int]:
        """How many of this view's tasks are in each phase."""
        return {phase: n for phase, n in self._phases.items() if n}

    def in_flight(self, node_id: str) -> int:
        """Tasks running on `node_id`, among those this view saw dispatched."""
        return self._per_node.get(node_id, 0)
