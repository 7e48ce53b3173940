"""DeploymentReady: the node runs a ready replica of the task's workspace that publishes
the task's container port. The core only offers replicas from the ready index; this
filter states the rule, and guards the index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentPhase, DeploymentState, NodeState

NOT_READY = "whose replica is not ready"
OTHER_WORKSPACE = "whose replica belongs to another workspace"
PORT_NOT_PUBLISHED = "whose replica does not publish port {port}"
NO_READY_REPLICA = "no ready replica of workspace {workspace_id}"
"""Reported on its own (no node count) when the workspace has no ready replica at all."""


@dataclass(frozen=True, slots=True)
class DeploymentReady:
    NAME: ClassVar[str] = "DeploymentReady"

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        if deployment.phase is not DeploymentPhase.READY:
            return NOT_READY
        if deployment.workspace_id != ctx.workspace_id:
            return OTHER_WORKSPACE
        ports = deployment.host_ports
        if (ctx.port not in ports) if ctx.port else not ports:
            return PORT_NOT_PUBLISHED
        return None


def new(settings: SchedulerSettings) -> DeploymentReady:
    return DeploymentReady()
