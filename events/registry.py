"""The closed set of event types, by wire name."""

from __future__ import annotations

from events.base import Event
from events.credentials import RegistryAuthChanged
from events.deployment import (
    DeploymentDraining,
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
)
from events.node import NodeDrained, NodeHeartbeat, NodeLost, NodeRegistered, NodeRevoked
from events.task import (
    IdempotencyChecked,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
)
from events.webhook import (
    WebhookAbandoned,
    WebhookAttempted,
    WebhookDelivered,
    WebhookSecretRotated,
)
from events.workspace import (
    ReplicasScaled,
    RolloutFailed,
    WorkspaceDeleted,
    WorkspaceRegistered,
    WorkspaceUpdated,
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        WorkspaceRegistered,
        WorkspaceUpdated,
        WorkspaceDeleted,
        ReplicasScaled,
        RolloutFailed,
        NodeRegistered,
        NodeHeartbeat,
        NodeLost,
        NodeDrained,
        NodeRevoked,
        DeploymentRequested,
        DeploymentStarting,
        DeploymentReady,
        DeploymentDraining,
        DeploymentFailed,
        DeploymentStopped,
        TaskSubmitted,
        TaskDispatched,
        TaskCompleted,
        TaskFailed,
        TaskRetried,
        TaskCancelRequested,
        TaskCancelled,
        TaskExpired,
        IdempotencyChecked,
        WebhookSecretRotated,
        RegistryAuthChanged,
        WebhookAttempted,
        WebhookDelivered,
        WebhookAbandoned,
    )
}
"""Every event class by its wire `type` (the class name)."""


def is_terminal(event: Event) -> bool:
    """Whether `event` ends its task: completed, cancelled, expired, or failed for good."""
    if isinstance(event, TaskFailed):
        return not event.retryable
    return isinstance(event, TaskCompleted | TaskCancelled | TaskExpired)
