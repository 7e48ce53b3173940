"""GpuFit: the node has `gpu_count` GPUs of the task's (normalized) type and the replica
holds that many. A task asking for 0 GPUs fits anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState

MISSING_GPU_TYPE = "without {gpu_type}"
TOO_FEW_GPUS = "without {gpu_type} x{gpu_count}"
REPLICA_TOO_SMALL = "whose replica holds less than {gpu_type} x{gpu_count}"


@dataclass(frozen=True, slots=True)
class GpuFit:
    NAME: ClassVar[str] = "GpuFit"

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        wanted = ctx.gpu_count
        if wanted <= 0:
            return None
        have = node.gpus.get(ctx.gpu_type, 0)
        if have < wanted:
            return TOO_FEW_GPUS if have else MISSING_GPU_TYPE
        if deployment.gpu_type != ctx.gpu_type or deployment.gpu_count < wanted:
            return REPLICA_TOO_SMALL
        return None


def new(settings: SchedulerSettings) -> GpuFit:
    return GpuFit()
