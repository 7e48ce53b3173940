"""Webhook events: what the `webhooks` role delivered of a task, and each workspace's
webhook signing secret generation.

A task submitted with a `webhook` (`TaskSubmitted.webhook`, `webhook_events`) gets one
message per event kind it asked for: `start` once its first attempt is dispatched,
`completed` once it has ended, however it ended. Every attempt to deliver one is a
`WebhookAttempted`; the message then ends as `WebhookDelivered` or `WebhookAbandoned`.
They share the task's key and topic, so the task's history says what was delivered, and
the role folds them again after a restart to resume its retries.

The signing secret itself is never an event: it is derived from a control-plane key and
the workspace's current `salt` (`services.webhooks.secrets`). A rotation is a new salt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from events import topics
from events.base import Event
from events.workspace import WorkspaceEvent

WebhookKind = Literal["start", "completed"]
"""Which message of a task: its first dispatch, or its end."""


@dataclass(frozen=True, slots=True)
class WebhookEvent(Event):
    KEY_FIELD: ClassVar[str] = "task_id"
    TOPIC: ClassVar[str] = topics.TASKS


@dataclass(frozen=True, slots=True)
class WebhookAttempted(WebhookEvent):
    """Attempt `attempt` (1-based) to deliver the task's `kind` message (`message_id`, the
    `webhook-id` header, the same on every attempt). `status_code` is the receiver's HTTP
    status (0: no answer), `latency_ms` how long the attempt took, `error` why it failed
    (empty when the receiver answered 2xx). `retry_in_s` > 0: the next attempt comes that
    long after this event's time; 0: none (delivered, or abandoned)."""

    task_id: str
    workspace_id: str
    kind: WebhookKind
    message_id: str
    attempt: int
    status_code: int
    latency_ms: float
    error: str = ""
    retry_in_s: float = 0.0


@dataclass(frozen=True, slots=True)
class WebhookDelivered(WebhookEvent):
    """The receiver answered 2xx to attempt `attempts` of the `kind` message."""

    task_id: str
    workspace_id: str
    kind: WebhookKind
    message_id: str
    attempts: int
    status_code: int


@dataclass(frozen=True, slots=True)
class WebhookAbandoned(WebhookEvent):
    """The `kind` message will not be delivered: its retry window passed, its target is
    refused, or its workspace is gone. `attempts` were made."""

    task_id: str
    workspace_id: str
    kind: WebhookKind
    message_id: str
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class WebhookSecretRotated(WorkspaceEvent):
    """The workspace's webhook signing secret changed: it is now derived from `salt` (random,
    not secret: the key it is combined with never leaves the control plane). The secret
    itself was answered once to the operator who rotated it."""

    workspace_id: str
    salt: str
