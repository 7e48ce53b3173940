import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import least_load
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(("in_flight", "expected"), [(0, 1.0), (1, 0.5), (3, 0.25), (99, 0.01)])
def test_least_load(in_flight: int, expected: float) -> None:
    plugin = least_load.new(SchedulerSettings())
    assert plugin.score(ctx(), dep(), node(in_flight=in_flight)) == pytest.approx(expected)
