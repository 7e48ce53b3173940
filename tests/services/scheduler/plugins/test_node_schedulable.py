import pytest

from services.scheduler import NodeStatus, SchedulerSettings
from services.scheduler.plugins import node_schedulable
from services.scheduler.plugins.node_schedulable import DRAINING, LOST
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("status", "expected"),
    [(NodeStatus.ACTIVE, None), (NodeStatus.DRAINING, DRAINING), (NodeStatus.LOST, LOST)],
)
def test_node_schedulable(status: NodeStatus, expected: str | None) -> None:
    plugin = node_schedulable.new(SchedulerSettings())
    assert plugin.filter(ctx(), dep(), node(status=status)) == expected
