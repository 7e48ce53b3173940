"""The control plane's read model of workspaces, nodes and their deployments, folded from
the workspace and node topics. Pure: `apply` takes envelopes, queries take values.

It serves the management API (workspace lookup by id and name, node tokens, the nodes
listing) and the node agents' assignments. Applying the same envelope twice leaves it as
applying it once, so it can be rebuilt by replaying the log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from events import (
    DeploymentDraining,
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
    Envelope,
    NodeDrained,
    NodeHeartbeat,
    NodeLost,
    NodeRegistered,
    NodeRevoked,
    RegistryAuthChanged,
    ReplicasScaled,
    RolloutFailed,
    WorkspaceDeleted,
    WorkspaceRegistered,
    WorkspaceUpdated,
)
from services.ingress.tokens import digest

DeploymentState = Literal["requested", "starting", "ready", "draining", "failed", "stopped"]


@dataclass(slots=True)
class WorkspaceView:
    registered: WorkspaceRegistered
    env: dict[str, str]
    replicas_min: int
    replicas_max: int
    timeout_s: float
    created_at: datetime
    retry_on_timeout: bool = False
    max_priority: int = 0
    revision: int = 1
    """The revision its replicas run (`registered` holds its template)."""
    latest_revision: int = 1
    """The highest revision ever given (a rolled-back one included): the next is above."""
    previous: tuple[WorkspaceRegistered, int] | None = None
    """The template and revision before the current one, while a rollout may fail."""
    scaling: dict[str, Any] = field(default_factory=dict)
    """metric, target, scale_up_after_s, scale_down_after_s."""
    scaled: dict[str, Any] | None = None
    """The scheduler's last `ReplicasScaled`: replicas, reason, at."""
    rollout: dict[str, Any] | None = None
    """The last failed rollout: revision, reason, at (until the next revision)."""

    registry_auth: str = ""
    """Sealed registry credentials (`events.credentials`), "" for none."""

    def apply_update(self, event: WorkspaceUpdated) -> None:
        """As the scheduler folds it (`WorkspaceSpec.updated`): settings always, the
        template when the event's revision is newer."""
        self.replicas_min, self.replicas_max = event.replicas_min, event.replicas_max
        self.timeout_s = event.timeout_s
        self.retry_on_timeout = event.retry_on_timeout
        self.max_priority = event.max_priority
        self.scaling = scaling_of(event)
        if event.revision == 0:
            self.env = dict(event.env)
        elif event.revision > self.revision:
            self.latest_revision = max(self.latest_revision, event.revision)
            self.previous = (replace(self.registered, env=self.env), self.revision)
            self.registered = replace(
                self.registered, image=event.image, command=tuple(event.command),
                gpu_type=event.gpu_type, gpu_count=event.gpu_count, ports=tuple(event.ports),
                health_path=event.health_path, concurrency=event.concurrency,
                env=dict(event.env),
            )  # fmt: skip
            self.env, self.revision, self.rollout = dict(event.env), event.revision, None

    def roll_back(self, event: RolloutFailed, at: datetime) -> None:
        if event.revision != self.revision or self.previous is None:
            return
        self.registered, self.revision = self.previous
        self.env, self.previous = dict(self.registered.env), None
        self.rollout = {"revision": event.revision, "state": "rolled_back",
                        "reason": event.reason, "at": at.isoformat()}  # fmt: skip


def scaling_of(event: WorkspaceRegistered | WorkspaceUpdated) -> dict[str, Any]:
    return {
        "metric": event.scaling_metric,
        "target": event.scaling_target,
        "scale_up_after_s": event.scale_up_after_s,
        "scale_down_after_s": event.scale_down_after_s,
    }


@dataclass(slots=True)
class DeploymentView:
    spec: DeploymentRequested
    state: DeploymentState = "requested"
    host_ports: dict[str, int] = field(default_factory=dict)
    reason: str = ""


@dataclass(slots=True)
class NodeView:
    registered: NodeRegistered
    last_heartbeat: datetime
    lost: bool = False
    draining: bool = False
    revoked: bool = False
    """Removed by an operator: its token is refused and it stays lost."""
    deployments: dict[str, DeploymentView] = field(default_factory=dict)

    def healthy(self, now: datetime, lost_after_s: float) -> bool:
        """Alive (heartbeat within the window), not lost, not draining."""
        fresh = now - self.last_heartbeat <= timedelta(seconds=lost_after_s)
        return fresh and not self.lost and not self.draining


@dataclass(slots=True)
class Directory:
    workspaces: dict[str, WorkspaceView] = field(default_factory=dict)
    workspace_names: dict[str, str] = field(default_factory=dict)
    workspace_digests: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, NodeView] = field(default_factory=dict)

    def apply(self, envelope: Envelope) -> None:
        """Fold one event in; events of other kinds are ignored."""
        event, at = envelope.event, envelope.occurred_at
        match event:
            case WorkspaceRegistered():
                self.workspaces[event.workspace_id] = WorkspaceView(
                    event, dict(event.env), event.replicas_min, event.replicas_max,
                    event.timeout_s, at, event.retry_on_timeout, max_priority=event.max_priority,
                    scaling=scaling_of(event),
                )  # fmt: skip
                self.workspace_names[event.name] = event.workspace_id
                self.workspace_digests[digest(event.workspace_id)] = event.workspace_id
                self.workspaces[event.workspace_id].registry_auth = event.registry_auth
            case RegistryAuthChanged():
                if view := self.workspaces.get(event.workspace_id):
                    view.registry_auth = event.registry_auth
            case WorkspaceUpdated():
                if view := self.workspaces.get(event.workspace_id):
                    view.apply_update(event)
            case ReplicasScaled():
                if view := self.workspaces.get(event.workspace_id):
                    view.scaled = {"replicas": event.replicas, "reason": event.reason,
                                   "at": at.isoformat()}  # fmt: skip
            case RolloutFailed():
                if view := self.workspaces.get(event.workspace_id):
                    view.roll_back(event, at)
            case WorkspaceDeleted():
                if view := self.workspaces.pop(event.workspace_id, None):
                    self.workspace_names.pop(view.registered.name, None)
                    self.workspace_digests.pop(digest(event.workspace_id), None)
            case NodeRegistered():
                known = self.nodes.get(event.node_id)
                if known is None or not known.revoked:  # a redelivery must not revive it
                    self.nodes[event.node_id] = NodeView(event, last_heartbeat=at)
            case _:
                self._apply_node_event(envelope)

    def _apply_node_event(self, envelope: Envelope) -> None:
        event = envelope.event
        node = self.nodes.get(getattr(event, "node_id", ""))
        if node is None:
            return
        match event:
            case NodeHeartbeat():
                node.last_heartbeat = max(node.last_heartbeat, envelope.occurred_at)
                node.lost = node.revoked
            case NodeLost():
                self._lose(node, f"node lost: {event.reason}")
            case NodeRevoked():
                node.revoked = True
                self._lose(node, f"node revoked: {event.reason}".rstrip(": "))
            case NodeDrained():
                node.draining = True
            case DeploymentRequested():
                node.deployments.setdefault(event.deployment_id, DeploymentView(event))
            case (
                DeploymentStarting()
                | DeploymentReady()
                | DeploymentDraining()
                | DeploymentFailed()
                | DeploymentStopped()
            ):
                self._apply_deployment_state(node, event)

    @staticmethod
    def _lose(node: NodeView, reason: str) -> None:
        node.lost = True
        for deployment in node.deployments.values():
            deployment.state, deployment.reason = "stopped", reason

    @staticmethod
    def _apply_deployment_state(
        node: NodeView,
        event: (
            DeploymentStarting
            | DeploymentReady
            | DeploymentDraining
            | DeploymentFailed
            | DeploymentStopped
        ),
    ) -> None:
        deployment = node.deployments.get(event.deployment_id)
        if deployment is None or deployment.state == "stopped":
            return  # stopped is final: a late report must not revive it
        match event:
            case DeploymentStarting():
                deployment.state = "starting"
            case DeploymentReady() if deployment.state != "draining":
                deployment.state, deployment.host_ports = "ready", dict(event.host_ports)
            case DeploymentDraining():
                deployment.state, deployment.reason = "draining", event.reason
            case DeploymentFailed():
                deployment.state, deployment.reason = "failed", event.reason
            case DeploymentStopped():
                deployment.state, deployment.reason = "stopped", event.reason

    def assignments(self, node_id: str) -> list[DeploymentRequested]:
        """What the node should be running: its deployments that are not stopped, in
        deployment-id order. (Deployments of a deleted workspace are stopped by the
        scheduler, through `DeploymentStopped`.)"""
        node = self.nodes.get(node_id)
        if node is None or node.lost:
            return []
        return [d.spec for _, d in sorted(node.deployments.items()) if d.state != "stopped"]

    def assignments_etag(self, node_id: str) -> str:
        """A digest of `assignments(node_id)`; it changes exactly when the set does."""
        ids = ",".join(d.deployment_id for d in self.assignments(node_id))
        return hashlib.sha256(ids.encode()).hexdigest()[:16]
