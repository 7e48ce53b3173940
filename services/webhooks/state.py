"""What the `webhooks` role knows of the tasks that asked for webhooks: pure fold of the
task topic. Tasks without a webhook are not kept.

A task is kept from its `TaskSubmitted` (where its webhook URL is) until it has ended and
each message it asked for is settled (`WebhookDelivered`, `WebhookAbandoned`): the role
commits its group's position below the oldest `TaskSubmitted` it keeps, so a restarted
role reads every event of the tasks it still owes a message, and folds its attempts back
into the same schedule (`WebhookAttempted.retry_in_s` from the attempt's time). That
position is at most a task's lifetime plus the retry window behind the log's end: what a
start reads is bounded by that window, never by the log's age.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events import (
    Envelope,
    IdempotencyChecked,
    TaskDispatched,
    TaskSubmitted,
    WebhookAbandoned,
    WebhookAttempted,
    WebhookDelivered,
    WebhookKind,
    is_terminal,
)
from services.ingress.taskview import TaskStatus, fold

Partition = tuple[str, int]


@dataclass(slots=True)
class Message:
    """One message of a task. `event_at` is the time of the event it reports (its
    payload's `timestamp`, and where its retry window starts); `due` when its next attempt
    is (None while one runs in this process, or once it is settled)."""

    kind: WebhookKind
    event_at: datetime
    attempts: int = 0
    due: datetime | None = None
    settled: bool = False
    in_flight: bool = False


@dataclass(slots=True)
class HookedTask:
    """A task with a webhook. `where` and `offset`: its `TaskSubmitted`'s record."""

    task_id: str
    workspace_id: str
    url: str
    kinds: tuple[WebhookKind, ...]
    where: Partition
    offset: int
    status: TaskStatus
    ended: bool = False
    messages: dict[str, Message] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Ended, and every message it triggered settled (a task that ended before it was
        dispatched never triggers `start`)."""
        return self.ended and all(m.settled for m in self.messages.values())


@dataclass(slots=True)
class Hooks:
    """The hooked tasks by id."""

    tasks: dict[str, HookedTask] = field(default_factory=dict)

    def apply(self, envelope: Envelope, where: Partition, offset: int) -> HookedTask | None:
        """Fold the event of the record at `where`/`offset`; returns the hooked task it
        concerns (None for the others). Folding a record twice is folding it once."""
        event, at = envelope.event, envelope.occurred_at
        if isinstance(event, TaskSubmitted):
            if not event.webhook or event.task_id in self.tasks:
                return self.tasks.get(event.task_id)
            status = fold(None, event)
            assert status is not None
            task = HookedTask(
                event.task_id, event.workspace_id, event.webhook,
                tuple(dict.fromkeys(event.webhook_events or ("completed",))), where, offset,
                status,
            )  # fmt: skip
            self.tasks[event.task_id] = task
            return task
        known = self.tasks.get(getattr(event, "task_id", ""))
        if known is None:
            return None
        if isinstance(event, IdempotencyChecked) and event.repeat:
            del self.tasks[event.task_id]  # it ends unrun: its first task's hooks speak
            return None
        task = known
        match event:
            case WebhookAttempted():
                message = task.messages.setdefault(event.kind, Message(event.kind, at))
                if event.attempt >= message.attempts:
                    message.attempts = event.attempt
                    if not message.settled and not message.in_flight:
                        # No retry announced and no settlement (yet): try again now.
                        message.due = at + timedelta(seconds=event.retry_in_s)
            case WebhookDelivered() | WebhookAbandoned():
                message = task.messages.setdefault(event.kind, Message(event.kind, at))
                message.attempts = max(message.attempts, event.attempts)
                message.settled, message.due = True, None
            case _:
                status = fold(task.status, event)
                if status is not None:
                    task.status = status
                if isinstance(event, TaskDispatched):
                    self._trigger(task, "start", at)
                if is_terminal(event) and not task.ended:
                    task.ended = True
                    self._trigger(task, "completed", at)
        return task

    @staticmethod
    def _trigger(task: HookedTask, kind: WebhookKind, at: datetime) -> None:
        if kind in task.kinds and kind not in task.messages:
            task.messages[kind] = Message(kind, at, due=at)

    def drop(self, task_id: str) -> HookedTask | None:
        return self.tasks.pop(task_id, None)

    def in_partition(self, where: Partition) -> list[HookedTask]:
        return [task for task in self.tasks.values() if task.where == where]
