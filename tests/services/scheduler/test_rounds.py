from events.task import TaskCancelled, TaskDispatched, TaskExpired, TaskFailed
from services.scheduler import dispatch_waiting, retry_event
from tests.services.scheduler.builders import Cluster, at, completed, failed, submitted


def _cluster(concurrency: int = 1) -> Cluster:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    for ws in ("A", "B"):
        c.workspace(ws, concurrency=concurrency)
    c.replica("a1", "n1", "A")
    c.replica("b1", "n2", "B")
    return c


def _dispatched(events: list[object]) -> list[tuple[str, str]]:
    return [(e.task_id, e.deployment_id) for e in events if isinstance(e, TaskDispatched)]


def test_tasks_that_do_not_fit_stay_queued_until_a_slot_frees() -> None:
    c = _cluster()
    c.fold(submitted("t1", "A"), submitted("t2", "A"), submitted("t3", "B"), t=1)
    events = dispatch_waiting(c.state, at(2))
    assert _dispatched(events) == [("t1", "a1"), ("t3", "b1")]
    assert [t.task_id for t in c.state.queue] == ["t2"]
    assert dispatch_waiting(c.state, at(3)) == []
    first = next(e for e in events if isinstance(e, TaskDispatched) and e.task_id == "t1")
    c.fold(completed(first), t=4)
    assert _dispatched(dispatch_waiting(c.state, at(5))) == [("t2", "a1")]
    assert len(c.state.queue) == 0


def test_limit_takes_turns_across_workspaces() -> None:
    c = _cluster(concurrency=10)
    c.fold(*(submitted(f"a{i}", "A") for i in range(3)), submitted("b0", "B"), t=1)
    events = dispatch_waiting(c.state, at(2), limit=2)
    assert _dispatched(events) == [("a0", "a1"), ("b0", "b1")]


def test_decisions_are_folded_and_folding_them_again_changes_nothing() -> None:
    c = _cluster(concurrency=2)
    c.fold(submitted("t1", "A"), submitted("t2", "A"), submitted("t3", "A"), t=1)
    events = dispatch_waiting(c.state, at(2))
    assert len(events) == 2
    assert c.state.deployments["a1"].in_flight == 2
    for event in events:
        c.state.apply_event(event, at(2))
    assert c.state.deployments["a1"].in_flight == 2
    assert [t.task_id for t in c.state.queue] == ["t3"]


def test_expired_and_orphaned_tasks_leave_the_queue() -> None:
    c = _cluster()
    c.fold(submitted("busy", "A"), t=0)
    c.fold(submitted("late", "A", ttl_s=5.0), submitted("gone", "B"), t=0)
    c.delete_workspace("B")
    events = dispatch_waiting(c.state, at(6))
    assert events[0] == TaskExpired(task_id="late", workspace_id="A", waited_s=6.0)
    assert events[1] == TaskCancelled(task_id="gone", workspace_id="B", reason="workspace deleted")
    assert _dispatched(events) == [("busy", "a1")]
    assert len(c.state.queue) == 0 and set(c.state.tasks) == {"busy"}


def test_a_retried_task_goes_to_another_node() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("A")
    c.replica("d1", "n1", "A")
    c.replica("d2", "n2", "A")
    c.fold(submitted("t", "A"))
    (first,) = dispatch_waiting(c.state, at(1))
    assert isinstance(first, TaskDispatched)
    c.fold(failed(first), t=2)
    c.fold(retry_event(c.state, failed(first)), t=2)
    (second,) = dispatch_waiting(c.state, at(3))
    assert isinstance(second, TaskDispatched)
    assert second.attempt == 2 and second.node_id != first.node_id


def test_a_retry_that_fits_nowhere_does_not_hold_back_its_twins() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("A")
    c.replica("d1", "n1", "A")
    c.replica("d2", "n2", "A", phase="starting")  # t1's hope: it waits for this one
    c.fold(submitted("t1", "A"), submitted("t2", "A"))
    (first,) = dispatch_waiting(c.state, at(1), limit=1)
    assert isinstance(first, TaskDispatched) and first.task_id == "t1"
    c.fold(failed(first), retry_event(c.state, failed(first)), t=2)
    assert _dispatched(dispatch_waiting(c.state, at(3))) == [("t2", "d1")]
    assert [t.task_id for t in c.state.queue] == ["t1"]


def test_a_retry_whose_only_other_replica_goes_away_ends_with_its_last_failure() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("A")
    c.replica("d1", "n1", "A")
    c.replica("d2", "n2", "A", phase="starting")
    c.fold(submitted("t1", "A"))
    (first,) = dispatch_waiting(c.state, at(1))
    c.fold(failed(first), retry_event(c.state, failed(first)), t=2)
    assert dispatch_waiting(c.state, at(3)) == []  # waits for d2
    c.lose("n2", t=4)  # now only n1, which failed it, has a replica
    (ended,) = dispatch_waiting(c.state, at(5))
    assert isinstance(ended, TaskFailed) and not ended.retryable
    assert (ended.attempt, ended.code, ended.node_id) == (1, "node_error", "n1")
    assert "t1" not in c.state.tasks and len(c.state.queue) == 0
