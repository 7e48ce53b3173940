import pytest

from services.scheduler import SchedulerSettings
from services.scheduler.plugins import free_slot
from services.scheduler.plugins.free_slot import ALL_SLOTS_BUSY, FreeSlot
from tests.services.scheduler.plugins.values import ctx, dep, node


@pytest.mark.parametrize(
    ("concurrency", "in_flight", "expected"),
    [
        (1, 0, None),
        (1, 1, ALL_SLOTS_BUSY),
        (2, 1, None),
        (2, 2, ALL_SLOTS_BUSY),
        (2, 3, ALL_SLOTS_BUSY),
        (8, 7, None),
    ],
)
def test_free_slot(concurrency: int, in_flight: int, expected: str | None) -> None:
    plugin = free_slot.new(SchedulerSettings())
    assert plugin.filter(ctx(concurrency=concurrency), dep(in_flight=in_flight), node()) == expected


def test_name() -> None:
    assert FreeSlot.NAME == "FreeSlot"
