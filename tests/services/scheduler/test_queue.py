from dataclasses import replace

import pytest

from services.scheduler import QueuedTask, WaitQueue
from tests.services.scheduler.builders import T0, at

_BASE = QueuedTask(
    task_id="",
    workspace_id="",
    gpu_type="RTX4090",
    gpu_count=1,
    port=8080,
    priority=0,
    ttl_s=60.0,
    submitted_s=T0.timestamp(),
    arrival=0,
)


def _queue(*specs: tuple[str, str, int]) -> WaitQueue:
    """Tasks (id, workspace, priority) arriving in the given order."""
    queue = WaitQueue()
    for arrival, (task_id, ws, priority) in enumerate(specs):
        queue.push(
            replace(_BASE, task_id=task_id, workspace_id=ws, priority=priority, arrival=arrival)
        )
    return queue


def _order(queue: WaitQueue, in_flight: dict[str, int] | None = None) -> list[str]:
    return [t.task_id for t in queue.ordered(in_flight or {})]


@pytest.mark.parametrize(
    ("tasks", "in_flight", "expected"),
    [
        # FIFO within one workspace and priority.
        ([("a1", "A", 0), ("a2", "A", 0), ("a3", "A", 0)], {}, ["a1", "a2", "a3"]),
        # Priority first, whatever the arrival.
        ([("a1", "A", 0), ("a2", "A", 5), ("b1", "B", 1)], {}, ["a2", "b1", "a1"]),
        # Fair share: workspaces take turns instead of A's burst going first.
        (
            [("a1", "A", 0), ("a2", "A", 0), ("a3", "A", 0), ("b1", "B", 0), ("b2", "B", 0)],
            {},
            ["a1", "b1", "a2", "b2", "a3"],
        ),
        # Fair share counts what is in flight: A holds 2 slots, so B's tasks go first.
        (
            [("a1", "A", 0), ("a2", "A", 0), ("b1", "B", 0), ("b2", "B", 0)],
            {"A": 2},
            ["b1", "b2", "a1", "a2"],
        ),
        # Equal share: arrival breaks the tie.
        ([("b1", "B", 0), ("a1", "A", 0)], {"A": 1, "B": 1}, ["b1", "a1"]),
        # Priority beats fair share.
        ([("a1", "A", 1), ("b1", "B", 0)], {"A": 100}, ["a1", "b1"]),
        # Turns are counted per priority level.
        (
            [("a1", "A", 1), ("a2", "A", 0), ("b1", "B", 0)],
            {},
            ["a1", "a2", "b1"],
        ),
    ],
)
def test_ordering(
    tasks: list[tuple[str, str, int]], in_flight: dict[str, int], expected: list[str]
) -> None:
    assert _order(_queue(*tasks), in_flight) == expected


def test_push_replaces_and_remove_counts() -> None:
    queue = _queue(("a1", "A", 0), ("a2", "A", 0))
    queue.push(replace(_BASE, task_id="a1", workspace_id="A", arrival=0, attempt=2))
    assert len(queue) == 2
    assert queue.waiting_count("A") == 2
    task = queue.get("a1")
    assert task is not None and task.attempt == 2
    assert queue.remove("a1") is not None
    assert queue.remove("a1") is None
    assert (queue.waiting_count("A"), "a1" in queue, "a2" in queue) == (1, False, True)
    assert [t.task_id for t in queue] == ["a2"]


def test_ttl_expiry_is_measured_from_submission() -> None:
    queue = WaitQueue()
    queue.push(replace(_BASE, task_id="short", workspace_id="A", ttl_s=10.0, arrival=0))
    queue.push(replace(_BASE, task_id="long", workspace_id="B", ttl_s=100.0, arrival=1))
    later = replace(_BASE, task_id="later", workspace_id="A", ttl_s=10.0, arrival=2)
    queue.push(replace(later, submitted_s=at(5).timestamp()))
    assert queue.expired(at(10)) == []  # exactly at the deadline: not yet past it
    expired = queue.expired(at(14.5))
    assert [(e.task_id, e.workspace_id, e.waited_s) for e in expired] == [("short", "A", 14.5)]
    assert len(queue) == 3  # `expired` does not mutate
    popped = queue.pop_expired(at(200))
    assert [e.task_id for e in popped] == ["short", "later", "long"]  # earliest deadline first
    assert len(queue) == 0


def test_copy_is_independent() -> None:
    queue = _queue(("a1", "A", 0))
    copy = queue.copy()
    queue.remove("a1")
    assert "a1" in copy and copy.waiting_count("A") == 1
