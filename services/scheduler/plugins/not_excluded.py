"""NotExcluded: the node has not already failed this task (`TaskRetried.excluded_node_ids`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState

FAILED_THIS_TASK = "that already failed this task"


@dataclass(frozen=True, slots=True)
class NotExcluded:
    NAME: ClassVar[str] = "NotExcluded"

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        return FAILED_THIS_TASK if node.node_id in ctx.excluded_node_ids else None


def new(settings: SchedulerSettings) -> NotExcluded:
    return NotExcluded()
