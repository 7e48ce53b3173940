"""SuccessRate: prefer nodes whose attempts succeed: `(successes + 1) / (attempts + 2)`
(Laplace smoothing: an unknown node scores 0.5, not 0 or 1). Successes are
`TaskCompleted`, failures `TaskFailed`, counted per node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState


@dataclass(frozen=True, slots=True)
class SuccessRate:
    NAME: ClassVar[str] = "SuccessRate"

    def score(self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState) -> float:
        return (node.successes + 1) / (node.successes + node.failures + 2)


def new(settings: SchedulerSettings) -> SuccessRate:
    return SuccessRate()
