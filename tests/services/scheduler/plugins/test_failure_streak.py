import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import failure_streak
from services.scheduler.plugins.failure_streak import FAILING_REPEATEDLY, FailureStreak
from tests.services.scheduler.plugins.values import NOW_S, ctx, dep, node


@pytest.mark.parametrize(
    ("limit", "streak", "failed_ago_s", "expected"),
    [
        (3, 0, None, None),
        (3, 2, 1.0, None),  # below the limit
        (3, 3, 1.0, FAILING_REPEATEDLY),  # at the limit, within the cooldown
        (3, 9, 59.0, FAILING_REPEATEDLY),
        (3, 3, 60.0, None),  # cooldown over: one probe may go
        (3, 3, None, None),  # no failure time: nothing to cool down from
        (0, 50, 1.0, None),  # limit 0 turns the filter off
    ],
)
def test_failure_streak(
    limit: int, streak: int, failed_ago_s: float | None, expected: str | None
) -> None:
    plugin = FailureStreak(limit=limit, cooldown_s=60.0)
    last = None if failed_ago_s is None else NOW_S - failed_ago_s
    candidate = node(consecutive_failures=streak, last_failure_s=last)
    assert plugin.filter(ctx(), dep(), candidate) == expected


def test_factory_reads_settings() -> None:
    plugin = failure_streak.new(SchedulerSettings(failure_streak=2, failure_cooldown_s=5.0))
    assert (plugin.limit, plugin.cooldown_s) == (2, 5.0)
