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

import heapq
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime

from events.task import TaskExpired
from services.scheduler.records import QueuedTask
from services.scheduler.times import epoch_s

PRIORITIES = 10
"""Task priorities are 0-9."""


class WaitQueue:
    """Waiting tasks by id. Pure data structure: no clock, no I/O; `ordered` and
    `expired` do not mutate. Pushing a task id again replaces its entry."""

    __slots__ = ("_deadlines", "_groups", "_per_workspace", "_tasks", "_unsorted")

    def __init__(self, tasks: Mapping[str, QueuedTask] | None = None) -> None:
        self._tasks: dict[str, QueuedTask] = {}
        self._per_workspace: dict[str, int] = {}
        # Tasks per (priority, workspace) in arrival order (when not in `_unsorted`), so
        # the scheduling order can be produced lazily by merging the groups.
        self._groups: dict[tuple[int, str], dict[str, QueuedTask]] = {}
        self._unsorted: set[tuple[int, str]] = set()
        # (deadline, task id), stale entries dropped lazily: spares `expired` a full scan.
        self._deadlines: list[tuple[float, str]] = []
        for task in (tasks or {}).values():
            self.push(task)

    def push(self, task: QueuedTask) -> None:
        """Add `task`, or replace the waiting entry with the same id."""
        self.remove(task.task_id)
        self._tasks[task.task_id] = task
        ws = task.workspace_id
        self._per_workspace[ws] = self._per_workspace.get(ws, 0) + 1
        group_key = (task.priority, ws)
        group = self._groups.setdefault(group_key, {})
        if group and _arrival_key(next(reversed(group.values()))) > _arrival_key(task):
            self._unsorted.add(group_key)
        group[task.task_id] = task
        heapq.heappush(self._deadlines, (task.deadline_s, task.task_id))

    def remove(self, task_id: str) -> QueuedTask | None:
        """Take `task_id` out; returns it, or None when it was not waiting."""
        task = self._tasks.pop(task_id, None)
        if task is not None:
            left = self._per_workspace[task.workspace_id] - 1
            if left:
                self._per_workspace[task.workspace_id] = left
            else:
                del self._per_workspace[task.workspace_id]
            group_key = (task.priority, task.workspace_id)
            group = self._groups[group_key]
            del group[task_id]
            if not group:
                del self._groups[group_key]
                self._unsorted.discard(group_key)
        return task

    def get(self, task_id: str) -> QueuedTask | None:
        return self._tasks.get(task_id)

    def waiting_workspaces(self) -> tuple[str, ...]:
        """The workspaces with at least one waiting task."""
        return tuple(self._per_workspace)

    def of_workspaces(self, workspace_ids: Collection[str]) -> list[QueuedTask]:
        """The waiting tasks of `workspace_ids`, in arrival order."""
        wanted = set(workspace_ids)
        found = [
            task
            for (_, ws), group in self._groups.items()
            if ws in wanted
            for task in group.values()
        ]
        return sorted(found, key=_arrival_key)

    def oldest_submitted_s(self, workspace_id: str) -> float | None:
        """When the longest-waiting task of `workspace_id` was submitted (None: none
        waits). O(priorities) for groups kept in arrival order."""
        if workspace_id not in self._per_workspace:
            return None
        oldest: float | None = None
        for priority in range(PRIORITIES):
            group = self._groups.get((priority, workspace_id))
            if not group:
                continue
            if (priority, workspace_id) in self._unsorted:
                first = min(task.submitted_s for task in group.values())
            else:
                first = next(iter(group.values())).submitted_s
            oldest = first if oldest is None else min(oldest, first)
        return oldest

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
        each workspace has in flight. O(n log g) for g (priority, workspace) groups."""
        return list(self.iter_ordered(in_flight))

    def iter_ordered(self, in_flight: Mapping[str, int]) -> Iterator[QueuedTask]:
        """`ordered`, lazily: taking the first k tasks costs O(g + k log g), so a round
        that can place only a few tasks does not pay for a long queue. The queue may be
        changed while iterating (each group is read from a snapshot)."""
        for group_key in self._unsorted:
            group = self._groups[group_key]
            ordered_group = sorted(group.values(), key=_arrival_key)
            group.clear()
            group.update((t.task_id, t) for t in ordered_group)
        self._unsorted.clear()
        streams = [
            _group_stream(priority, in_flight.get(ws, 0), list(group.values()))
            for (priority, ws), group in self._groups.items()
        ]
        for _, task in heapq.merge(*streams, key=lambda entry: entry[0]):
            yield task

    def expired(self, now: datetime) -> list[TaskExpired]:
        """A `TaskExpired` for every task whose deadline has passed at `now`, earliest
        deadline first. Does not mutate: fold the events (or `pop_expired`) to remove them."""
        now_s = epoch_s(now)
        deadlines = self._deadlines
        while deadlines and self._deadline_is_stale(*deadlines[0]):
            heapq.heappop(deadlines)
        if not deadlines or now_s <= deadlines[0][0]:
            return []
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

    def _deadline_is_stale(self, deadline_s: float, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        return task is None or task.deadline_s != deadline_s

    def copy(self) -> WaitQueue:
        return WaitQueue(self._tasks)


def _arrival_key(task: QueuedTask) -> tuple[int, str]:
    return (task.arrival, task.task_id)


def _group_stream(
    priority: int, in_flight: int, tasks: list[QueuedTask]
) -> Iterator[tuple[tuple[int, int, int, str], QueuedTask]]:
    """One group's tasks with their sort keys, increasing (the k-th waits behind k)."""
    for k, task in enumerate(tasks):
        yield (-priority, in_flight + k, task.arrival, task.task_id), task
