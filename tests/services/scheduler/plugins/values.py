"""One candidate (context, replica, node) with defaults that pass every plugin; tests
override the fields they are about."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.scheduler import DeploymentPhase, DeploymentState, NodeState, NodeStatus
from services.scheduler.plugins import ScheduleContext

NOW_S = 1_000_000.0

_CTX = ScheduleContext(
    task_id="t1",
    workspace_id="ws",
    gpu_type="RTX4090",
    gpu_count=1,
    port=8080,
    concurrency=2,
    excluded_node_ids=frozenset(),
    now_s=NOW_S,
)
_DEP = DeploymentState(
    deployment_id="d1",
    node_id="n1",
    workspace_id="ws",
    gpu_type="RTX4090",
    gpu_count=1,
    phase=DeploymentPhase.READY,
    host_ports={8080: 30000},
)
_NODE = NodeState(
    node_id="n1",
    host="10.0.0.1",
    address="0xabc",
    region="eu",
    runtime="docker",
    gpus={"RTX4090": 2},
    status=NodeStatus.ACTIVE,
    last_heartbeat_s=NOW_S - 1,
)


def ctx(**changes: Any) -> ScheduleContext:
    return replace(_CTX, **changes)


def dep(**changes: Any) -> DeploymentState:
    return replace(_DEP, **changes)


def node(**changes: Any) -> NodeState:
    return replace(_NODE, **changes)
