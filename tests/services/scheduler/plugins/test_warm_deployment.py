import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import warm_deployment
from tests.services.scheduler.plugins.values import NOW_S, ctx, dep, node


@pytest.mark.parametrize(
    ("served_ago_s", "expected"),
    [(None, 0.0), (0.0, 1.0), (599.0, 1.0), (600.0, 1.0), (600.5, 0.0)],
)
def test_warm_deployment(served_ago_s: float | None, expected: float) -> None:
    plugin = warm_deployment.new(SchedulerSettings(warm_window_s=600.0))
    last = None if served_ago_s is None else NOW_S - served_ago_s
    assert plugin.score(ctx(), dep(last_served_s=last), node()) == expected
