"""The values of one scheduling decision: what is asked, and the two possible answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.scheduler.records import QueuedTask


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """Place attempt `attempt` of a task. `gpu_type` may be unnormalized; `port` is the
    container port to reach (0: the workspace's first port); `now` is the decision time
    (UTC-aware; the core reads no clock). `preferred_region` is optional: tasks carry no
    region yet, so only callers that know one pass it."""

    task_id: str
    workspace_id: str
    gpu_type: str
    gpu_count: int
    port: int
    now: datetime
    attempt: int = 1
    excluded_node_ids: frozenset[str] = field(default_factory=frozenset)
    preferred_region: str | None = None

    @classmethod
    def for_task(
        cls, task: QueuedTask, now: datetime, preferred_region: str | None = None
    ) -> ScheduleRequest:
        """The request for the next attempt of a waiting task."""
        return cls(
            task_id=task.task_id,
            workspace_id=task.workspace_id,
            gpu_type=task.gpu_type,
            gpu_count=task.gpu_count,
            port=task.port,
            now=now,
            attempt=task.attempt,
            excluded_node_ids=task.excluded_node_ids,
            preferred_region=preferred_region,
        )


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the task goes: a ready replica, and the one target the dispatcher may call
    (`host`:`host_port`, the port the replica publishes for `container_port`). `score` is
    the weighted total of the winner; `feasible` how many replicas passed every filter."""

    task_id: str
    workspace_id: str
    node_id: str
    deployment_id: str
    host: str
    address: str
    container_port: int
    host_port: int
    score: float
    feasible: int


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """No replica can take the task now; the task keeps waiting. `reasons` maps a plugin
    name to what it rejected, e.g. `{"GpuFit": ("3 nodes without RTX4090 x2",)}` (counts
    are per candidate replica). `evaluated` is how many replicas were looked at."""

    task_id: str
    reasons: Mapping[str, tuple[str, ...]]
    evaluated: int = 0

    @property
    def message(self) -> str:
        """The reasons on one line, plugin by plugin."""
        return "; ".join(f"{name}: {', '.join(lines)}" for name, lines in self.reasons.items())
