"""HeartbeatFresh: the node's last heartbeat is at most `window_s` old at decision time
(`SchedulerSettings.heartbeat_window_s`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState

STALE_HEARTBEAT = "with no recent heartbeat"


@dataclass(frozen=True, slots=True)
class HeartbeatFresh:
    NAME: ClassVar[str] = "HeartbeatFresh"
    window_s: float

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        return None if ctx.now_s - node.last_heartbeat_s <= self.window_s else STALE_HEARTBEAT


def new(settings: SchedulerSettings) -> HeartbeatFresh:
    return HeartbeatFresh(window_s=settings.heartbeat_window_s)
