"""The waiting queue: tasks that are not placed yet, in the order they should be tried.

Order (`WaitQueue.ordered`), exactly:
1. priority, higher first;
2. fair share: `in_flight[workspace] + k`, lower first, where `k` is the number of the
   same workspace's waiting tasks of the same priority that arrived earlier. So workspaces
   take turns (round robin), and a workspace that already holds many slots waits behind
   one that holds few;
3. arrival, earlier first (FIFO; within one workspace and priority, order is arrival).

A task that cannot be placed stays queued; only its TTL (`ttl_s` from the submission
envelope's time) takes it out, as a `TaskExpired` event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

from events.task import TaskExpired
from services.scheduler.records import QueuedTask
from services.scheduler.times import epoch_s


class WaitQueue:
    """Waiting tasks by id. Pure data structure: no clock, no I/O; `ordered` and
    `expired` do not mutate. Pushing a task id again replaces its entry."""

    __slots__ = ("_per_workspace", "_tasks")

    def __init__(self, tasks: Mapping[str, QueuedTask] | None = None) -> None:
        self._tasks: dict[str, QueuedTask] = {}
        self._per_workspace: dict[str, int] = {}
        for task in (tasks or {}).values():
            self.push(task)

    def push(self, task: QueuedTask) -> None:
        """Add `task`, or replace the waiting entry with the same id."""
        self.remove(task.task_id)
        self._tasks[task.task_id] = task
        ws = task.workspace_id
        self._per_workspace[ws] = self._per_workspace.get(ws, 0) + 1

    def remove(self, task_id: str) -> QueuedTask | None:
        """Take `task_id` out; returns it, or None when it was not waiting."""
        task = self._tasks.pop(task_id, None)
        if task is not None:
            left = self._per_workspace[task.workspace_id] - 1
            if left:
                self._per_workspace[task.workspace_id] = left
            else:
                del self._per_workspace[task.workspace_id]
        return task

    def get(self, task_id: str) -> QueuedTask | None:
        return self._tasks.get(task_id)

    def waiting_workspaces(self) -> tuple[str, ...]:
        """The workspaces with at least one waiting task."""
        return tuple(self._per_workspace)

    def waiting_count(self, workspace_id: str) -> int:
        """How many tasks of `workspace_id` wait."""
        return self._per_workspace.get(workspace_id, 0)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[QueuedTask]:
        """Waiting tasks in arrival order (not scheduling order: see `ordered`)."""
        return iter(sorted(self._tasks.values(), key=_arrival_key))

    def ordered(self, in_flight: Mapping[str, int]) -> list[QueuedTask]:
        """Waiting tasks in the order to try them (module docstring), given the tasks
        each workspace has in flight. O(n log n)."""
        taken: dict[tuple[int, str], int] = {}
        keyed: list[tuple[int, int, int, str, QueuedTask]] = []
        for task in sorted(self._tasks.values(), key=_arrival_key):
            group = (task.priority, task.workspace_id)
            k = taken.get(group, 0)
            taken[group] = k + 1
            share = in_flight.get(task.workspace_id, 0) + k
            keyed.append((-task.priority, share, task.arrival, task.task_id, task))
        keyed.sort(key=lambda entry: entry[:4])
        return [entry[4] for entry in keyed]

    def expired(self, now: datetime) -> list[TaskExpired]:
        """A `TaskExpired` for every task whose deadline has passed at `now`, earliest
        deadline first. Does not mutate: fold the events (or `pop_expired`) to remove them."""
        now_s = epoch_s(now)
        late = [t for t in self._tasks.values() if now_s > t.deadline_s]
        late.sort(key=lambda t: (t.deadline_s, t.arrival, t.task_id))
        return [
            TaskExpired(
                task_id=t.task_id, workspace_id=t.workspace_id, waited_s=now_s - t.submitted_s
            )
            for t in late
        ]

    def pop_expired(self, now: datetime) -> list[TaskExpired]:
        """Like `expired`, and removes those tasks from the queue."""
        events = self.expired(now)
        for event in events:
            self.remove(event.task_id)
        return events

    def copy(self) -> WaitQueue:
        return WaitQueue(self._tasks)


def _arrival_key(task: QueuedTask) -> tuple[int, str]:
    return (task.arrival, task.task_id)
