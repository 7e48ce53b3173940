"""The plugin contract. A filter answers "may this replica take the task?" with None or
one of its named reason constants; a score rates a feasible replica in [0, 1]. Both see
one candidate — a ready replica of the task's workspace and its node — and a
`ScheduleContext` computed once per decision. Plugins are pure and never mutate what they
are given.

Reason constants are phrases that read after a count of nodes ("3 nodes" + " without
RTX4090 x2"); they may name `{gpu_type}`, `{gpu_count}`, `{port}`, `{concurrency}` and
`{workspace_id}`, which the core fills in when it reports `Unschedulable`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from services.scheduler.config import SchedulerSettings
from services.scheduler.records import DeploymentState, NodeState


@dataclass(frozen=True, slots=True)
class ScheduleContext:
    """What the plugins know about one decision. `gpu_type` is normalized; `port` is the
    container port to reach (0: the replica's first published port); `concurrency` is the
    slots per replica of the workspace; `now_s` is epoch seconds; `workspace_latency_s`
    is the workspace's processing-time EWMA across nodes (None before any sample)."""

    task_id: str
    workspace_id: str
    gpu_type: str
    gpu_count: int
    port: int
    concurrency: int
    excluded_node_ids: frozenset[str]
    now_s: float
    preferred_region: str | None = None
    workspace_latency_s: float | None = None


class FilterPlugin(Protocol):
    """Rejects a candidate with a reason constant, or lets it through with None."""

    NAME: ClassVar[str]

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None: ...


class ScorePlugin(Protocol):
    """Rates a feasible candidate in [0, 1]; higher is better."""

    NAME: ClassVar[str]

    def score(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> float: ...


FilterFactory = Callable[[SchedulerSettings], FilterPlugin]
ScoreFactory = Callable[[SchedulerSettings], ScorePlugin]
