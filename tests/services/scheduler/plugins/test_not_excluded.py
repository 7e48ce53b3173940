import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import not_excluded
from services.scheduler.plugins.not_excluded import FAILED_THIS_TASK
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("excluded", "expected"),
    [
        (frozenset(), None),
        (frozenset({"n2"}), None),
        (frozenset({"n1"}), FAILED_THIS_TASK),
        (frozenset({"n2", "n1"}), FAILED_THIS_TASK),
    ],
)
def test_not_excluded(excluded: frozenset[str], expected: str | None) -> None:
    plugin = not_excluded.new(SchedulerSettings())
    assert plugin.filter(ctx(excluded_node_ids=excluded), dep(), node(node_id="n1")) == expected
