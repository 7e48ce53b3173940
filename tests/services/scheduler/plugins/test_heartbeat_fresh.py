import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import heartbeat_fresh
from services.scheduler.plugins.heartbeat_fresh import STALE_HEARTBEAT, HeartbeatFresh
from tests.services.scheduler.plugins.values import NOW_S, ctx, dep, node


@pytest.mark.parametrize(
    ("age_s", "window_s", "expected"),
    [
        (0.0, 30.0, None),
        (29.9, 30.0, None),
        (30.0, 30.0, None),  # the window is inclusive
        (30.1, 30.0, STALE_HEARTBEAT),
        (5.0, 2.0, STALE_HEARTBEAT),
        (-3.0, 30.0, None),  # a heartbeat stamped after `now` (clock skew) is fresh
    ],
)
def test_heartbeat_fresh(age_s: float, window_s: float, expected: str | None) -> None:
    plugin = HeartbeatFresh(window_s=window_s)
    assert plugin.filter(ctx(), dep(), node(last_heartbeat_s=NOW_S - age_s)) == expected


def test_factory_takes_the_window_from_settings() -> None:
    plugin = heartbeat_fresh.new(SchedulerSettings(heartbeat_window_s=7.0, lost_after_s=20.0))
    assert plugin.window_s == 7.0
