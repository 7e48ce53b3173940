"""NodeSchedulable: the node takes new work — not draining (it finishes what it runs)
and not lost or revoked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState, NodeStatus

DRAINING = "draining"
LOST = "lost"
REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class NodeSchedulable:
    NAME: ClassVar[str] = "NodeSchedulable"

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        status = node.status
        if status is NodeStatus.ACTIVE:
            return None
        if status is NodeStatus.DRAINING:
            return DRAINING
        return REVOKED if status is NodeStatus.REVOKED else LOST


def new(settings: SchedulerSettings) -> NodeSchedulable:
    return NodeSchedulable()
