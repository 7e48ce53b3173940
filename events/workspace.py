"""Workspace events: a demand-side team's deployable (image, command, GPUs, ports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from events import topics
from events.base import Event


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
    registry_auth: str = ""
    """Registry credentials, sealed (`events.credentials`); `RegistryAuthChanged` replaces them."""


@dataclass(frozen=True, slots=True)
class WorkspaceUpdated(WorkspaceEvent):
    """The mutable settings of a workspace changed; every field holds the new full value."""

    workspace_id: str
    env: dict[str, str]
    replicas_min: int
    replicas_max: int
    timeout_s: float
    retry_on_timeout: bool = False
    max_priority: int = 0


@dataclass(frozen=True, slots=True)
class WorkspaceDeleted(WorkspaceEvent):
    """The workspace is gone: its credential stops working and its replicas are stopped."""

    workspace_id: str
