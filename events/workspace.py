"""Workspace events: a demand-side team's deployable (image, command, GPUs, ports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from events import topics
from events.base import Event

ScalingMetric = Literal["queue_delay", "in_flight"]


@dataclass(frozen=True, slots=True)
class WorkspaceEvent(Event):
    KEY_FIELD: ClassVar[str] = "workspace_id"
    TOPIC: ClassVar[str] = topics.WORKSPACES


@dataclass(frozen=True, slots=True)
class WorkspaceRegistered(WorkspaceEvent):
    """A workspace was created. `workspace_id` is also the NGPU API's bearer credential.

    `command` is the argv to run (a shell string arrives as `("sh", "-c", string)`);
    `ports` are the container ports the image serves, the first being the default target.
    `retry_on_timeout`: whether an attempt that outlived `timeout_s` is tried again on
    another node (by default it is terminal: GPU work that overran once will overrun again).
    `max_priority`: the highest `priority` (0-9) a task of the workspace may ask for.
    """

    workspace_id: str
    name: str
    userkey: str
    image: str
    command: tuple[str, ...]
    gpu_type: str
    gpu_count: int
    ports: tuple[int, ...]
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    replicas_min: int = 1
    replicas_max: int = 1
    timeout_s: float = 600.0
    concurrency: int = 1
    retry_on_timeout: bool = False
    max_priority: int = 0
    webhook_salt: str = ""
    """What the workspace's first webhook signing secret is derived from (with a key only
    the control plane holds): not itself secret. `WebhookSecretRotated` replaces it."""
    scaling_metric: ScalingMetric = "queue_delay"
    """What the scheduler scales the replicas on, between `replicas_min` and `replicas_max`:
    the oldest waiting task's age (s), or tasks (running and waiting) per replica."""
    scaling_target: float = 4.0
    """The metric's target: seconds of queue delay, or tasks per replica."""
    scale_up_after_s: float = 0.0
    """How long the metric must stay above its target before a replica is added."""
    scale_down_after_s: float = 60.0
    """How long fewer replicas must have sufficed before one is stopped (and how long an
    idle workspace with `replicas_min` 0 keeps its last replica)."""
    registry_auth: str = ""
    """Registry credentials, sealed (`events.credentials`); `RegistryAuthChanged` replaces them."""


@dataclass(frozen=True, slots=True)
class WorkspaceUpdated(WorkspaceEvent):
    """The mutable settings of a workspace changed; every field holds the new full value.

    With `revision` above the workspace's, what its replicas run changed too (the fields
    from `image` to `concurrency` then hold the full new template, `env` included): a new
    revision, rolled out replica by replica. With `revision` 0 they are unused (an older
    event, or a change of settings alone: `env` then applies to replicas started later)."""

    workspace_id: str
    env: dict[str, str]
    replicas_min: int
    replicas_max: int
    timeout_s: float
    retry_on_timeout: bool = False
    max_priority: int = 0
    scaling_metric: ScalingMetric = "queue_delay"
    scaling_target: float = 4.0
    scale_up_after_s: float = 0.0
    scale_down_after_s: float = 60.0
    revision: int = 0
    image: str = ""
    command: tuple[str, ...] = ()
    gpu_type: str = ""
    gpu_count: int = 0
    ports: tuple[int, ...] = ()
    health_path: str = ""
    concurrency: int = 0


@dataclass(frozen=True, slots=True)
class ReplicasScaled(WorkspaceEvent):
    """The scheduler set how many replicas the workspace should run (within its min and
    max), and why: what the metric was against its target, or an arrival with none."""

    workspace_id: str
    replicas: int
    reason: str


@dataclass(frozen=True, slots=True)
class RolloutFailed(WorkspaceEvent):
    """The replicas of `revision` kept failing to start: the workspace is back on the
    revision before it (whose replicas served meanwhile) until its next update."""

    workspace_id: str
    revision: int
    reason: str


@dataclass(frozen=True, slots=True)
class WorkspaceDeleted(WorkspaceEvent):
    """The workspace is gone: its credential stops working and its replicas are stopped."""

    workspace_id: str
