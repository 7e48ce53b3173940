"""FreeSlot: the replica has a free request slot. A replica serves `concurrency` tasks at
once (the workspace's setting, default 1); each dispatched, unfinished task takes one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState

ALL_SLOTS_BUSY = "with every slot busy ({concurrency} per replica)"


@dataclass(frozen=True, slots=True)
class FreeSlot:
    NAME: ClassVar[str] = "FreeSlot"

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        return None if deployment.in_flight < ctx.concurrency else ALL_SLOTS_BUSY


def new(settings: SchedulerSettings) -> FreeSlot:
    return FreeSlot()
