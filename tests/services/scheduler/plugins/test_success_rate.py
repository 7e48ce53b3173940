import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import success_rate
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("successes", "failures", "expected"),
    [(0, 0, 0.5), (8, 0, 0.9), (0, 8, 0.1), (3, 3, 0.5), (98, 0, 0.99)],
)
def test_success_rate(successes: int, failures: int, expected: float) -> None:
    plugin = success_rate.new(SchedulerSettings())
    candidate = node(successes=successes, failures=failures)
    assert plugin.score(ctx(), dep(), candidate) == pytest.approx(expected)
