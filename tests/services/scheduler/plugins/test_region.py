import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import region
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("preferred", "node_region", "expected"),
    [
        (None, "eu", 0.0),  # no preference: every node alike
        ("", "eu", 0.0),
        ("eu", "eu", 1.0),
        ("eu", "us", 0.0),
        ("eu", "EU", 0.0),  # exact match only
    ],
)
def test_region(preferred: str | None, node_region: str, expected: float) -> None:
    plugin = region.new(SchedulerSettings())
    score = plugin.score(ctx(preferred_region=preferred), dep(), node(region=node_region))
    assert score == expected
