"""NodeSchedulable: the node takes new work — not draining (it finishes what it runs)
and not lost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState, NodeStatus

DRAINING = "draining"
LOST = "lost"


@dataclass(frozen=True, slots=True)
class NodeSchedulable:
    NAME: ClassVar[str] = "NodeSchedulable"

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        status = node.status
        if status is NodeStatus.ACTIVE:
            return None
        return DRAINING if status is NodeStatus.DRAINING else LOST


def new(settings: SchedulerSettings) -> NodeSchedulable:
    return NodeSchedulable()
