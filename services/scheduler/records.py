"""The values `ClusterState` is made of. Frozen: the fold replaces a record on change, so
a record handed to a plugin or a caller never changes under it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from events.task import BodyEncoding, TaskFailed, TaskSubmitted
from events.workspace import WorkspaceRegistered, WorkspaceUpdated
from services.scheduler.gpu import normalize_gpu_type


class NodeStatus(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    LOST = "lost"
    REVOKED = "revoked"
    """Removed by an operator: lost for good (a heartbeat does not bring it back)."""


class DeploymentPhase(StrEnum):
    """Phases of a live replica; failed and stopped replicas leave the state."""

    REQUESTED = "requested"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    """Ready, but sent no more tasks: stopped once those it runs have ended."""


@dataclass(frozen=True, slots=True)
class NodeState:
    """One registered node. `gpus` maps normalized GPU type to count. `in_flight` counts
    tasks dispatched to it and not yet finished (the scheduler's own count);
    `reported_in_flight` is the node's last heartbeat figure. Times are epoch seconds."""

    node_id: str
    host: str
    address: str
    region: str
    runtime: str
    gpus: Mapping[str, int]
    status: NodeStatus = NodeStatus.ACTIVE
    last_heartbeat_s: float = 0.0
    lost_at_s: float | None = None
    reported_in_flight: int = 0
    in_flight: int = 0
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_failure_s: float | None = None
    latency_ewma_s: float | None = None
    proxy_cert_sha256: str = ""
    """The pin of the certificate its proxies serve (empty: plain HTTP)."""


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """One live replica. `gpu_type` is normalized; `host_ports` maps container port to
    host port (filled when ready); `in_flight` is the number of slots taken."""

    deployment_id: str
    node_id: str
    workspace_id: str
    gpu_type: str
    gpu_count: int
    phase: DeploymentPhase = DeploymentPhase.REQUESTED
    host_ports: Mapping[int, int] = field(default_factory=dict)
    in_flight: int = 0
    served: int = 0
    last_served_s: float | None = None
    latency_ewma_s: float | None = None
    requested_s: float = 0.0
    revision: int = 1


@dataclass(frozen=True, slots=True)
class WorkspaceSpec:
    """What a workspace deploys (its `revision`: the template its replicas run), with its
    updates applied, and how it scales. `gpu_type` is normalized; `concurrency` is the
    number of tasks one replica serves at once (at least 1). `previous` is the template
    before the latest revision, kept while a rollout may fail back to it."""

    workspace_id: str
    image: str
    command: tuple[str, ...]
    gpu_type: str
    gpu_count: int
    ports: tuple[int, ...]
    health_path: str = "/health"
    env: Mapping[str, str] = field(default_factory=dict)
    replicas_min: int = 1
    replicas_max: int = 1
    timeout_s: float = 600.0
    concurrency: int = 1
    revision: int = 1
    scaling_metric: str = "queue_delay"
    scaling_target: float = 4.0
    scale_up_after_s: float = 0.0
    scale_down_after_s: float = 60.0
    previous: WorkspaceSpec | None = None

    @classmethod
    def from_event(cls, event: WorkspaceRegistered) -> WorkspaceSpec:
        return cls(
            workspace_id=event.workspace_id,
            image=event.image,
            command=tuple(event.command),
            gpu_type=normalize_gpu_type(event.gpu_type),
            gpu_count=event.gpu_count,
            ports=tuple(event.ports),
            health_path=event.health_path,
            env=MappingProxyType(dict(event.env)),
            replicas_min=max(0, event.replicas_min),
            replicas_max=max(0, event.replicas_max),
            timeout_s=event.timeout_s,
            concurrency=max(1, event.concurrency),
            scaling_metric=event.scaling_metric,
            scaling_target=event.scaling_target,
            scale_up_after_s=event.scale_up_after_s,
            scale_down_after_s=event.scale_down_after_s,
        )

    def updated(self, event: WorkspaceUpdated) -> WorkspaceSpec:
        """With the event's settings; with its template too when it is a newer revision
        (an older or equal one, a PATCH that lost a race, changes the settings alone)."""
        settings = replace(
            self,
            env=MappingProxyType(dict(event.env)),
            replicas_min=max(0, event.replicas_min),
            replicas_max=max(0, event.replicas_max),
            timeout_s=event.timeout_s,
            scaling_metric=event.scaling_metric,
            scaling_target=event.scaling_target,
            scale_up_after_s=event.scale_up_after_s,
            scale_down_after_s=event.scale_down_after_s,
        )
        if event.revision <= self.revision:
            return settings if event.revision == 0 else replace(settings, env=self.env)
        return replace(
            settings,
            image=event.image,
            command=tuple(event.command),
            gpu_type=normalize_gpu_type(event.gpu_type),
            gpu_count=event.gpu_count,
            ports=tuple(event.ports),
            health_path=event.health_path,
            concurrency=max(1, event.concurrency),
            revision=event.revision,
            previous=replace(self, previous=None),
        )

    def rolled_back(self) -> WorkspaceSpec:
        """Back on the previous template (its replicas serve again), keeping the settings."""
        if self.previous is None:
            return self
        before = self.previous
        return replace(
            self,
            image=before.image, command=before.command, gpu_type=before.gpu_type,
            gpu_count=before.gpu_count, ports=before.ports, health_path=before.health_path,
            env=before.env, concurrency=before.concurrency, revision=before.revision,
            previous=None,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TaskPayload:
    """The request a task carries from `TaskSubmitted` to `TaskDispatched`, so that the
    dispatcher needs no other event (`method` is kept for when the dispatch carries it)."""

    method: str = "POST"
    param_url: str = "/"
    request_body: str = ""
    body_encoding: BodyEncoding = "utf-8"
    content_type: str = "application/json"
    timeout_s: float = 600.0
    retry_on_timeout: bool = False
    stream: bool = False

    @classmethod
    def of(cls, event: TaskSubmitted) -> TaskPayload:
        return cls(
            method=event.method,
            param_url=event.param_url,
            request_body=event.request_body,
            body_encoding=event.body_encoding,
            content_type=event.content_type,
            timeout_s=event.timeout_s,
            retry_on_timeout=event.retry_on_timeout,
            stream=event.stream,
        )


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A task the scheduler knows and has not seen finish. `attempt` is the next attempt
    to dispatch; `arrival` orders tasks FIFO (the fold's count of submissions, kept across
    retries); `submitted_s` is the submission envelope's time, from which `ttl_s` runs;
    `payload` is the request to send; `last_failure` the failure of its previous attempt."""

    task_id: str
    workspace_id: str
    gpu_type: str
    gpu_count: int
    port: int
    priority: int
    ttl_s: float
    submitted_s: float
    arrival: int
    attempt: int = 1
    excluded_node_ids: frozenset[str] = field(default_factory=frozenset)
    payload: TaskPayload = field(default_factory=TaskPayload)
    last_failure: TaskFailed | None = None

    @property
    def deadline_s(self) -> float:
        return self.submitted_s + self.ttl_s


@dataclass(frozen=True, slots=True)
class Assignment:
    """A dispatched attempt holding one slot of `deployment_id` until it finishes."""

    task_id: str
    workspace_id: str
    node_id: str
    deployment_id: str
    attempt: int
    dispatched_s: float = 0.0
    """When its `TaskDispatched` was folded (the dispatch's time, epoch seconds)."""
