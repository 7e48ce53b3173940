"""LeastLoad: prefer the node with the fewest tasks in flight (the scheduler's own count
of dispatched, unfinished tasks, across all its replicas): `1 / (1 + in_flight)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState


@dataclass(frozen=True, slots=True)
class LeastLoad:
    NAME: ClassVar[str] = "LeastLoad"

    def score(self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState) -> float:
        return 1.0 / (1 + node.in_flight)


def new(settings: SchedulerSettings) -> LeastLoad:
    return LeastLoad()
