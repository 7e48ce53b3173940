"""WarmDeployment: prefer a replica that completed a task within `window_s`
(`SchedulerSettings.warm_window_s`): its model is loaded and its caches are hot, where a
fresh or long-idle replica may pay a cold start. 1.0 if warm, else 0.0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState


@dataclass(frozen=True, slots=True)
class WarmDeployment:
    NAME: ClassVar[str] = "WarmDeployment"
    window_s: float

    def score(self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState) -> float:
        last = deployment.last_served_s
        return 1.0 if last is not None and ctx.now_s - last <= self.window_s else 0.0


def new(settings: SchedulerSettings) -> WarmDeployment:
    return WarmDeployment(window_s=settings.warm_window_s)
