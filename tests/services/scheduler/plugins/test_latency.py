import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import latency
from services.scheduler.plugins.latency import NEUTRAL
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("workspace_s", "replica_s", "node_s", "expected"),
    [
        (None, None, None, NEUTRAL),
        (None, 1.0, 1.0, NEUTRAL),  # nothing to compare with
        (2.0, None, None, NEUTRAL),  # this replica and node never served
        (2.0, 2.0, None, 0.5),  # average
        (2.0, 1.0, None, 2 / 3),  # twice as fast
        (2.0, 4.0, None, 1 / 3),  # twice as slow
        (2.0, None, 1.0, 2 / 3),  # falls back to the node's EWMA
        (2.0, 4.0, 1.0, 1 / 3),  # the replica's own EWMA wins over the node's
        (0.0, 0.0, None, NEUTRAL),  # no division by zero
        (0.03, 0.03, None, 0.5),  # scale-free
    ],
)
def test_latency(
    workspace_s: float | None, replica_s: float | None, node_s: float | None, expected: float
) -> None:
    plugin = latency.new(SchedulerSettings())
    score = plugin.score(
        ctx(workspace_latency_s=workspace_s),
        dep(latency_ewma_s=replica_s),
        node(latency_ewma_s=node_s),
    )
    assert score == pytest.approx(expected)
