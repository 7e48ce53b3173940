"""The shared contract: event dataclasses, their envelope, topics and keys, and the codec."""

from events import topics
from events.base import Event, utc_now
from events.codec import decode, encode, event_from_data, event_json_schema, to_document
from events.credentials import RegistryAuthChanged
from events.deployment import (
    DeploymentDraining,
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
)
from events.envelope import Envelope, TraceContext
from events.errors import EventDecodeError, EventEncodeError, NgpuError
from events.node import (
    GpuInfo,
    NodeDrained,
    NodeHeartbeat,
    NodeLost,
    NodeRegistered,
    NodeRevoked,
)
from events.registry import EVENT_TYPES, is_terminal
from events.task import (
    BodyEncoding,
    IdempotencyChecked,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskMode,
    TaskRetried,
    TaskSubmitted,
)
from events.webhook import (
    WebhookAbandoned,
    WebhookAttempted,
    WebhookDelivered,
    WebhookKind,
    WebhookSecretRotated,
)
from events.workspace import (
    ReplicasScaled,
    RolloutFailed,
    ScalingMetric,
    WorkspaceDeleted,
    WorkspaceRegistered,
    WorkspaceUpdated,
)

__all__ = [
    "EVENT_TYPES",
    "BodyEncoding",
    "DeploymentDraining",
    "DeploymentFailed",
    "DeploymentReady",
    "DeploymentRequested",
    "DeploymentStarting",
    "DeploymentStopped",
    "Envelope",
    "Event",
    "EventDecodeError",
    "EventEncodeError",
    "GpuInfo",
    "IdempotencyChecked",
    "NgpuError",
    "NodeDrained",
    "NodeHeartbeat",
    "NodeLost",
    "NodeRegistered",
    "NodeRevoked",
    "RegistryAuthChanged",
    "ReplicasScaled",
    "RolloutFailed",
    "ScalingMetric",
    "TaskCancelRequested",
    "TaskCancelled",
    "TaskCompleted",
    "TaskDispatched",
    "TaskExpired",
    "TaskFailed",
    "TaskMode",
    "TaskRetried",
    "TaskSubmitted",
    "TraceContext",
    "WebhookAbandoned",
    "WebhookAttempted",
    "WebhookDelivered",
    "WebhookKind",
    "WebhookSecretRotated",
    "WorkspaceDeleted",
    "WorkspaceRegistered",
    "WorkspaceUpdated",
    "decode",
    "encode",
    "event_from_data",
    "event_json_schema",
    "is_terminal",
    "to_document",
    "topics",
    "utc_now",
]
