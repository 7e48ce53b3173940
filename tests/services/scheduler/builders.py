"""Builders for scheduler tests: events with sensible defaults, and a cluster assembled
by folding real events (never by reaching into the state)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from events.base import Event
from events.deployment import (
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
)
from events.node import GpuInfo, NodeDrained, NodeHeartbeat, NodeLost, NodeRegistered
from events.task import TaskCompleted, TaskDispatched, TaskFailed, TaskSubmitted
from events.workspace import WorkspaceDeleted, WorkspaceRegistered
from services.scheduler import ClusterState, ScheduleRequest

T0 = datetime(2025, 1, 1, tzinfo=UTC)
PORT = 8080


def at(seconds: float = 0.0) -> datetime:
    """`seconds` after the tests' epoch T0."""
    return T0 + timedelta(seconds=seconds)


def node_registered(
    node_id: str, gpus: Iterable[str] = ("RTX4090",), *, region: str = "eu"
) -> NodeRegistered:
    return NodeRegistered(
        node_id=node_id,
        address=f"0xaddr-{node_id}",
        host=f"host-{node_id}",
        region=region,
        gpus=tuple(GpuInfo(type=g) for g in gpus),
        runtime="process",
        token_sha256="0" * 64,
    )


def workspace_registered(
    workspace_id: str,
    *,
    gpu_type: str = "RTX4090",
    gpu_count: int = 1,
    replicas_min: int = 1,
    replicas_max: int = 1,
    concurrency: int = 1,
    ports: tuple[int, ...] = (PORT,),
    **extra: Any,
) -> WorkspaceRegistered:
    return WorkspaceRegistered(
        workspace_id=workspace_id,
        name=workspace_id,
        userkey="user",
        image="img:1",
        command=("serve",),
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        ports=ports,
        replicas_min=replicas_min,
        replicas_max=replicas_max,
        concurrency=concurrency,
        **extra,
    )


def submitted(
    task_id: str,
    workspace_id: str,
    *,
    gpu_type: str = "RTX4090",
    gpu_count: int = 1,
    port: int = PORT,
    priority: int = 0,
    ttl_s: float = 3600.0,
) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id,
        seq=1,
        workspace_id=workspace_id,
        userkey="user",
        btc_address="",
        mode="async",
        method="POST",
        request_url="/run",
        param_url="/run",
        param_port=port,
        user_ip="127.0.0.1",
        request_body="{}",
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        timeout_s=60.0,
        priority=priority,
        ttl_s=ttl_s,
    )


def completed(dispatched: TaskDispatched, *, took_s: float = 1.0) -> TaskCompleted:
    return TaskCompleted(
        task_id=dispatched.task_id,
        workspace_id=dispatched.workspace_id,
        attempt=dispatched.attempt,
        node_id=dispatched.node_id,
        node_ip=dispatched.node_ip,
        node_address=dispatched.node_address,
        status_code=200,
        response_body="{}",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=took_s),
        gpu_type="RTX4090",
        gpu_count=1,
    )


def failed(dispatched: TaskDispatched, *, retryable: bool = True) -> TaskFailed:
    return TaskFailed(
        task_id=dispatched.task_id,
        workspace_id=dispatched.workspace_id,
        attempt=dispatched.attempt,
        node_id=dispatched.node_id,
        code="node_error",
        reason="connection refused",
        retryable=retryable,
    )


def dispatched(
    task_id: str, workspace_id: str, node_id: str, deployment_id: str, *, attempt: int = 1
) -> TaskDispatched:
    return TaskDispatched(
        task_id=task_id,
        workspace_id=workspace_id,
        attempt=attempt,
        node_id=node_id,
        node_ip=f"host-{node_id}",
        node_address=f"0xaddr-{node_id}",
        deployment_id=deployment_id,
        host_port=30000,
    )


class Cluster:
    """A `ClusterState` built by folding events; `log` keeps them for rebuilding."""

    def __init__(self) -> None:
        self.state = ClusterState()
        self.log: list[tuple[Event, datetime]] = []

    def fold(self, *events: Event, t: float = 0.0) -> None:
        for event in events:
            self.state.apply_event(event, at(t))
            self.log.append((event, at(t)))

    def rebuilt(self) -> ClusterState:
        """A fresh state folded from the same log."""
        state = ClusterState()
        for event, when in self.log:
            state.apply_event(event, when)
        return state

    def node(
        self,
        node_id: str,
        gpus: Iterable[str] = ("RTX4090",),
        *,
        region: str = "eu",
        t: float = 0.0,
    ) -> None:
        self.fold(node_registered(node_id, gpus, region=region), t=t)

    def heartbeat(self, node_id: str, t: float) -> None:
        self.fold(NodeHeartbeat(node_id=node_id), t=t)

    def drain(self, node_id: str, t: float = 0.0) -> None:
        self.fold(NodeDrained(node_id=node_id), t=t)

    def lose(self, node_id: str, t: float = 0.0) -> None:
        self.fold(NodeLost(node_id=node_id, reason="test"), t=t)

    def workspace(self, workspace_id: str, **kwargs: Any) -> None:
        self.fold(workspace_registered(workspace_id, **kwargs))

    def delete_workspace(self, workspace_id: str) -> None:
        self.fold(WorkspaceDeleted(workspace_id=workspace_id))

    def replica(
        self,
        deployment_id: str,
        node_id: str,
        workspace_id: str,
        *,
        phase: str = "ready",
        gpu_type: str = "RTX4090",
        gpu_count: int = 1,
        host_ports: dict[str, int] | None = None,
        revision: int = 0,
    ) -> None:
        """A replica folded through requested -> starting -> `phase` (or failed/stopped)."""
        ids = {"deployment_id": deployment_id, "node_id": node_id, "workspace_id": workspace_id}
        self.fold(
            DeploymentRequested(
                **ids,
                image="img:1",
                command=("serve",),
                ports=(PORT,),
                gpu_type=gpu_type,
                gpu_count=gpu_count,
                revision=revision,
            )
        )
        if phase == "requested":
            return
        self.fold(DeploymentStarting(**ids))
        if phase == "ready":
            ports = {str(PORT): 30000} if host_ports is None else host_ports
            self.fold(DeploymentReady(**ids, host_ports=ports))
        elif phase == "failed":
            self.fold(DeploymentFailed(**ids, reason="crashed"))
        elif phase == "stopped":
            self.fold(DeploymentStopped(**ids, reason="test"))

    def request(
        self,
        task_id: str,
        workspace_id: str,
        *,
        t: float = 0.0,
        gpu_type: str = "RTX4090",
        gpu_count: int = 1,
        port: int = PORT,
        excluded: Iterable[str] = (),
        region: str | None = None,
    ) -> ScheduleRequest:
        return ScheduleRequest(
            task_id=task_id,
            workspace_id=workspace_id,
            gpu_type=gpu_type,
            gpu_count=gpu_count,
            port=port,
            now=at(t),
            excluded_node_ids=frozenset(excluded),
            preferred_region=region,
        )
