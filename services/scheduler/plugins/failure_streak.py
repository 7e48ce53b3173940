"""FailureStreak: a circuit breaker for nodes that keep failing. After `limit` consecutive
failed attempts (`TaskFailed`, reset by any `TaskCompleted`) a node gets no task until
`cooldown_s` has passed since its last failure; then one task may probe it, and another
failure pauses it again. `limit` 0 turns the filter off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from services.scheduler.config import SchedulerSettings
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.records import DeploymentState, NodeState

FAILING_REPEATEDLY = "paused after repeated failures"


@dataclass(frozen=True, slots=True)
class FailureStreak:
    NAME: ClassVar[str] = "FailureStreak"
    limit: int
    cooldown_s: float

    def filter(
        self, ctx: ScheduleContext, deployment: DeploymentState, node: NodeState
    ) -> str | None:
        if not self.limit or node.consecutive_failures < self.limit:
            return None
        last = node.last_failure_s
        if last is not None and ctx.now_s - last < self.cooldown_s:
            return FAILING_REPEATEDLY
        return None


def new(settings: SchedulerSettings) -> FailureStreak:
    return FailureStreak(limit=settings.failure_streak, cooldown_s=settings.failure_cooldown_s)
