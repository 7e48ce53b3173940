"""Cancels in the scheduler's fold: a `TaskCancelRequested` ends a task with no attempt in
flight (the scheduler's own `TaskCancelled`), leaves one in flight to the dispatcher, and
the first terminal event wins whatever the order."""

from __future__ import annotations

from events.task import TaskCancelled, TaskCancelRequested, TaskDispatched, TaskRetried
from services.scheduler import cancel_requested, dispatch_waiting
from tests.services.scheduler.builders import Cluster, at, completed, failed, submitted


def _cluster() -> Cluster:
    """One replica of workspace A with one slot."""
    c = Cluster()
    c.node("n1")
    c.workspace("A", concurrency=1)
    c.replica("a1", "n1", "A")
    return c


def _dispatch(c: Cluster, t: float) -> list[TaskDispatched]:
    events = dispatch_waiting(c.state, at(t))
    for event in events:
        c.log.append((event, at(t)))
    return [e for e in events if isinstance(e, TaskDispatched)]


def _request(task_id: str) -> TaskCancelRequested:
    return TaskCancelRequested(task_id=task_id, workspace_id="A")


def test_a_queued_task_is_cancelled_at_once_and_never_dispatched() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), submitted("t2", "A"), t=1)
    (first,) = _dispatch(c, 2)
    assert first.task_id == "t1"
    c.fold(_request("t2"), t=3)
    assert "t2" not in c.state.queue
    assert cancel_requested(c.state, at(3)) == [
        TaskCancelled(task_id="t2", workspace_id="A", reason="cancelled by the caller")
    ]
    assert "t2" not in c.state.tasks and c.state.cancelling == {}
    assert cancel_requested(c.state, at(4)) == []  # once
    c.fold(completed(first), t=5)
    assert _dispatch(c, 6) == []  # the slot is free, and t2 is gone


def test_a_running_task_is_left_to_the_dispatcher_and_its_end_frees_the_slot() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), submitted("t2", "A"), t=1)
    _dispatch(c, 2)
    c.fold(_request("t1"), t=3)
    # An attempt is in flight: the dispatcher aborts it and publishes the end.
    assert cancel_requested(c.state, at(3)) == []
    assert c.state.cancelling == {"t1": "cancelled by the caller"}
    assert c.state.deployments["a1"].in_flight == 1
    c.fold(TaskCancelled(task_id="t1", workspace_id="A", reason="cancelled by the caller"), t=4)
    assert c.state.deployments["a1"].in_flight == 0
    assert "t1" not in c.state.tasks and c.state.cancelling == {}
    (second,) = _dispatch(c, 4)
    assert second.task_id == "t2"


def test_a_completion_read_before_the_cancel_wins() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), submitted("t2", "A"), t=1)
    (first,) = _dispatch(c, 2)
    c.fold(completed(first), t=3)
    (second,) = _dispatch(c, 3)
    c.fold(_request("t1"), t=4)  # too late: t1 has ended
    assert c.state.cancelling == {} and cancel_requested(c.state, at(4)) == []
    # A late cancel of t1 (from anywhere) gives back no slot: t2 still holds a1's.
    c.fold(TaskCancelled(task_id="t1", workspace_id="A", reason="late"), t=5)
    assert c.state.assignments.keys() == {"t2"}
    assert c.state.deployments["a1"].in_flight == 1
    assert second.task_id == "t2"


def test_a_completion_racing_the_cancel_frees_the_slot_once() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), submitted("t2", "A"), t=1)
    (first,) = _dispatch(c, 2)
    c.fold(_request("t1"), t=3)
    # The call returned before the dispatcher read the request: its completion wins.
    c.fold(completed(first), t=4)
    assert "t1" not in c.state.tasks and c.state.cancelling == {}
    assert cancel_requested(c.state, at(4)) == []
    (second,) = _dispatch(c, 5)
    c.fold(TaskCancelled(task_id="t1", workspace_id="A", reason="late duplicate"), t=6)
    assert c.state.assignments.keys() == {second.task_id} == {"t2"}
    assert c.state.deployments["a1"].in_flight == 1


def test_a_cancelled_task_whose_attempt_failed_is_cancelled_not_retried() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), t=1)
    (first,) = _dispatch(c, 2)
    c.fold(_request("t1"), t=3)
    assert cancel_requested(c.state, at(3)) == []
    c.fold(failed(first, retryable=True), t=4)
    (cancel,) = cancel_requested(c.state, at(4))
    assert cancel.task_id == "t1" and "t1" not in c.state.tasks
    # A retry decided before the request was folded does not queue it again.
    c.fold(TaskRetried(task_id="t1", workspace_id="A", attempt=2, excluded_node_ids=(),
                       reason="x"), t=5)  # fmt: skip
    assert "t1" not in c.state.queue and _dispatch(c, 6) == []


def test_a_retried_task_waiting_for_its_next_attempt_is_cancelled_at_once() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), t=1)
    (first,) = _dispatch(c, 2)
    c.fold(failed(first, retryable=True), t=3)
    c.fold(TaskRetried(task_id="t1", workspace_id="A", attempt=2, excluded_node_ids=("n9",),
                       reason="x"), t=3)  # fmt: skip
    assert "t1" in c.state.queue
    c.fold(_request("t1"), t=4)
    assert "t1" not in c.state.queue
    assert [e.task_id for e in cancel_requested(c.state, at(4))] == ["t1"]


def test_requests_for_unknown_or_ended_tasks_and_duplicates_change_nothing() -> None:
    c = _cluster()
    c.fold(_request("ghost"), t=1)
    assert c.state.cancelling == {}
    c.fold(submitted("t1", "A"), t=1)
    c.fold(_request("t1"), _request("t1"), t=2)
    assert len(cancel_requested(c.state, at(2))) == 1
    c.fold(_request("t1"), t=3)  # after its end
    assert c.state.cancelling == {} and cancel_requested(c.state, at(3)) == []


def test_the_fold_is_the_same_when_rebuilt_from_the_log() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), submitted("t2", "A"), submitted("t3", "A"), t=1)
    _dispatch(c, 2)
    c.fold(_request("t1"), _request("t3"), t=3)
    rebuilt = c.rebuilt()
    reason = "cancelled by the caller"
    assert rebuilt.cancelling == c.state.cancelling == {"t1": reason, "t3": reason}
    assert [t.task_id for t in rebuilt.queue] == [t.task_id for t in c.state.queue] == ["t2"]
    assert [e.task_id for e in rebuilt.cancels_due()] == ["t3"]
