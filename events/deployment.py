"""Deployment events: one replica of a workspace on one node. Keyed by node id so that a
node's deployment history stays in order with its own lifecycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from events import topics
from events.base import Event


@dataclass(frozen=True, slots=True)
class DeploymentEvent(Event):
    KEY_FIELD: ClassVar[str] = "node_id"
    TOPIC: ClassVar[str] = topics.NODES


@dataclass(frozen=True, slots=True)
class DeploymentRequested(DeploymentEvent):
    """The scheduler placed a replica on a node; carries everything the node agent runs."""

    deployment_id: str
    node_id: str
    workspace_id: str
    image: str
    command: tuple[str, ...]
    ports: tuple[int, ...]
    gpu_type: str
    gpu_count: int
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    revision: int = 0
    """The workspace revision it runs (0: requested before revisions were recorded, the
    workspace's first)."""


@dataclass(frozen=True, slots=True)
class DeploymentStarting(DeploymentEvent):
    """The node agent accepted the assignment and is starting it."""

    deployment_id: str
    node_id: str
    workspace_id: str


@dataclass(frozen=True, slots=True)
class DeploymentReady(DeploymentEvent):
    """The replica passed its health check. `host_ports` maps each declared container port
    (as a string, JSON keys being strings) to the host port the node publishes it on."""

    deployment_id: str
    node_id: str
    workspace_id: str
    host_ports: dict[str, int]


@dataclass(frozen=True, slots=True)
class DeploymentDraining(DeploymentEvent):
    """The scheduler sends no more tasks to the replica (a newer revision replaces it);
    it is stopped once the tasks it runs have ended."""

    deployment_id: str
    node_id: str
    workspace_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeploymentFailed(DeploymentEvent):
    """The replica could not start or stopped being healthy."""

    deployment_id: str
    node_id: str
    workspace_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeploymentStopped(DeploymentEvent):
    """The replica was stopped on purpose (scale-in, workspace deleted, node drained)."""

    deployment_id: str
    node_id: str
    workspace_id: str
    reason: str
