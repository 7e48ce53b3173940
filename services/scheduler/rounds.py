"""One scheduling round over the waiting queue, for the runner."""

from __future__ import annotations

from datetime import datetime

from events.base import Event
from events.task import TaskCancelled
from services.scheduler.core import dispatch_event, ended_by_exclusions, no_node_left, schedule
from services.scheduler.decision import ScheduleRequest, Unschedulable
from services.scheduler.profile import Profile
from services.scheduler.state import ClusterState


def cancel_requested(state: ClusterState, now: datetime) -> list[Event]:
    """The `TaskCancelled` of every task whose cancel was requested and that has no
    attempt in flight (queued, or its attempt failed), each folded into `state` at `now`.
    A task with an attempt in flight is ended by the dispatcher that runs the call."""
    events: list[Event] = []
    for event in state.cancels_due():
        state.apply_event(event, now)
        events.append(event)
    return events


def check_keys(state: ClusterState, now: datetime) -> list[Event]:
    """The `IdempotencyChecked` of every keyed task awaiting one, each followed, for a
    repeat of an earlier task, by the `TaskCancelled` that ends it; all folded into
    `state` at `now` (a first claim queues its task)."""
    events: list[Event] = []
    for verdict in state.keys_due(now):
        state.apply_event(verdict, now)
        events.append(verdict)
        if verdict.repeat:
            ended = TaskCancelled(
                verdict.task_id, verdict.workspace_id,
                reason=f"a repeat of task {verdict.original_task_id} (same Idempotency-Key)",
            )  # fmt: skip
            state.apply_event(ended, now)
            events.append(ended)
    return events


def dispatch_waiting(
    state: ClusterState,
    now: datetime,
    profile: Profile | None = None,
    *,
    limit: int | None = None,
) -> list[Event]:
    """Decide every waiting task once, at `now`, and return the events to publish:
    `TaskExpired` for tasks past their TTL, `TaskCancelled` for tasks of a deleted
    workspace, the terminal `TaskFailed` of a task every replica of whose workspace is on
    a node it excluded, then a `TaskDispatched` per task that fits (at most `limit`), tried in
    `WaitQueue.ordered` order. Tasks that fit nowhere stay queued.

    Each event is folded into `state` (in place, at `now`) before the next decision, so
    no slot is given twice; pass the runner's state. Folding the same events again when
    they come back from the bus changes nothing.
    """
    expired = state.queue.expired(now)
    expiring = {event.task_id for event in expired}
    events: list[Event] = list(expired)
    # Only the (few) deleted workspaces' tasks are looked at: iterating the whole queue
    # here made every round cost a sort of the backlog.
    deleted = [ws for ws in state.queue.waiting_workspaces() if state.is_deleted(ws)]
    events.extend(
        TaskCancelled(task.task_id, task.workspace_id, reason="workspace deleted")
        for task in state.queue.of_workspaces(deleted)
        if task.task_id not in expiring
    )
    for event in events:
        state.apply_event(event, now)
    dispatched = 0
    # A task with no exclusions that fits nowhere means its twins cannot fit either.
    blocked: set[tuple[str, str, int, int]] = set()
    for task in state.queue.iter_ordered(state.in_flight_by_workspace):
        if limit is not None and dispatched >= limit:
            break
        shape = (task.workspace_id, task.gpu_type, task.gpu_count, task.port)
        if shape in blocked:
            continue
        decision = schedule(state, ScheduleRequest.for_task(task, now), profile)
        if isinstance(decision, Unschedulable):
            if not task.excluded_node_ids:
                blocked.add(shape)
            elif task.last_failure is not None and no_node_left(
                state, task.workspace_id, task.excluded_node_ids
            ):
                # Only its exclusions keep it waiting: it ends now, not at its TTL.
                ended = ended_by_exclusions(task.last_failure)
                state.apply_event(ended, now)
                events.append(ended)
            continue
        event = dispatch_event(state, task, decision, task.attempt)
        state.apply_event(event, now)
        events.append(event)
        dispatched += 1
    return events
