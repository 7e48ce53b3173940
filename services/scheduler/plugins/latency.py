"""Latency: prefer the replica that processes this workspace's tasks faster.

The replica's processing-time EWMA (else its node's) is compared with the workspace's
EWMA across all nodes: `ref / (ref + own)`, so an average replica scores 0.5, one twice
as fast 0.67, one twice as slow 0.33. Scale-free (a 30 s model and a 30 ms model rate
alike) and per candidate. Without samples the score is the neutral 0.5."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState

NEUTRAL = 0.5


@dataclass(frozen=True, slots=True)
class Latency:
    NAME: ClassVar[str] = "Latency"

    def score(self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState) -> float:
        own = deployment.latency_ewma_s
        if own is None:
            own = node.latency_ewma_s
        ref = ctx.workspace_latency_s
        if own is None or ref is None or own + ref <= 0.0:
            return NEUTRAL
        return ref / (ref + own)


def new(settings: SchedulerSettings) -> Latency:
    return Latency()
