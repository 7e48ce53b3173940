"""Region: prefer nodes in the request's preferred region (`ScheduleRequest.
preferred_region`, exact match): 1.0 there, else 0.0. Tasks carry no region yet, so the
preference is optional; without one every node scores 0 and the plugin changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState


@dataclass(frozen=True, slots=True)
class Region:
    NAME: ClassVar[str] = "Region"

    def score(self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState) -> float:
        wanted = ctx.preferred_region
        return 1.0 if wanted and node.region == wanted else 0.0


def new(settings: SchedulerSettings) -> Region:
    return Region()
