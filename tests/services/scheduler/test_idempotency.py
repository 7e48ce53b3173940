"""Idempotency keys in the scheduler's fold: a keyed task waits out of the queue for the
verdict (`check_keys`), the first of a key within the window claims it, a repeat ends at
once without running, and the verdicts in the log (not the order the submissions happen
to be folded in) decide who holds a key, for a rebuilt state as for the live one."""

from __future__ import annotations

from dataclasses import replace

from events.task import IdempotencyChecked, TaskCancelled, TaskCancelRequested, TaskSubmitted
from services.scheduler import cancel_requested, check_keys, dispatch_waiting
from services.scheduler.state import IDEMPOTENCY_WINDOW_S
from tests.services.scheduler.builders import Cluster, at, submitted


def _cluster() -> Cluster:
    c = Cluster()
    c.node("n1")
    c.workspace("A", concurrency=4)
    c.replica("a1", "n1", "A")
    return c


def _keyed(task_id: str, key: str = "k1", digest: str = "d1") -> TaskSubmitted:
    return replace(submitted(task_id, "A"), idempotency_key=key, request_digest=digest)


def _check(c: Cluster, t: float) -> list[IdempotencyChecked | TaskCancelled]:
    events = check_keys(c.state, at(t))
    for event in events:
        c.log.append((event, at(t)))
    return events  # type: ignore[return-value]


def _dispatched(c: Cluster, t: float) -> set[str]:
    return {e.task_id for e in dispatch_waiting(c.state, at(t)) if hasattr(e, "node_id")}


def test_a_keyed_task_waits_for_its_verdict_then_runs() -> None:
    c = _cluster()
    c.fold(_keyed("t1"), submitted("plain", "A"), t=1)
    assert "t1" not in c.state.queue and "plain" in c.state.queue
    assert _dispatched(c, 1) == {"plain"}
    assert _check(c, 2) == [IdempotencyChecked("t1", "A", "k1", "t1", "d1")]
    assert _dispatched(c, 2) == {"t1"}
    assert _check(c, 3) == []  # once


def test_a_repeat_ends_at_once_naming_the_first_and_its_request() -> None:
    c = _cluster()
    c.fold(_keyed("t1"), t=1)
    _check(c, 1)
    c.fold(_keyed("t2", digest="other"), _keyed("t3"), t=5)
    verdicts = _check(c, 5)
    reason = "a repeat of task t1 (same Idempotency-Key)"
    assert verdicts == [
        IdempotencyChecked("t2", "A", "k1", "t1", "d1"), TaskCancelled("t2", "A", reason),
        IdempotencyChecked("t3", "A", "k1", "t1", "d1"), TaskCancelled("t3", "A", reason),
    ]  # fmt: skip
    assert c.state.tasks.keys() == {"t1"}
    assert _dispatched(c, 6) == {"t1"}


def test_two_first_submissions_folded_together_get_one_holder() -> None:
    c = _cluster()
    c.fold(_keyed("t1"), _keyed("t2"), _keyed("other", key="k2"), t=1)
    verdicts = [e for e in _check(c, 1) if isinstance(e, IdempotencyChecked)]
    assert [(v.task_id, v.original_task_id) for v in verdicts] == [
        ("t1", "t1"), ("t2", "t1"), ("other", "other")
    ]  # fmt: skip
    assert _dispatched(c, 2) == {"t1", "other"}


def test_the_verdicts_in_the_log_decide_whatever_order_the_fold_sees() -> None:
    """A new leader may fold the submissions of two partitions in another order than the
    old one did: the old leader's verdicts still name the same holder."""
    c = _cluster()
    c.fold(_keyed("t1"), _keyed("t2"), t=1)
    _check(c, 1)  # t1 holds k1
    decided = [event for event, _ in c.log if not isinstance(event, TaskSubmitted)]
    reordered = Cluster()
    reordered.node("n1")
    reordered.workspace("A", concurrency=4)
    reordered.replica("a1", "n1", "A")
    reordered.fold(_keyed("t2"), _keyed("t1"), *decided, t=1)
    assert check_keys(reordered.state, at(2)) == []
    assert reordered.state.tasks.keys() == {"t1"}
    assert [task.task_id for task in reordered.state.queue] == ["t1"]
    assert c.rebuilt().tasks.keys() == {"t1"}


def test_a_claim_ends_with_the_window() -> None:
    c = _cluster()
    c.fold(_keyed("t1"), t=1)
    _check(c, 1)
    c.fold(_keyed("t2"), t=IDEMPOTENCY_WINDOW_S)
    assert [e.original_task_id for e in _check(c, IDEMPOTENCY_WINDOW_S)
            if isinstance(e, IdempotencyChecked)] == ["t1"]  # fmt: skip
    later = IDEMPOTENCY_WINDOW_S + 2
    c.fold(_keyed("t3"), t=later)
    assert _check(c, later) == [IdempotencyChecked("t3", "A", "k1", "t3", "d1")]
    # A claim past its window is forgotten as the fold's time passes it.
    c.fold(_keyed("t4", key="k2"), t=2 * IDEMPOTENCY_WINDOW_S + 10)
    _check(c, 2 * IDEMPOTENCY_WINDOW_S + 10)
    assert c.state.claimed_keys() == {"k2": "t4"}


def test_a_task_cancelled_before_its_verdict_is_ended_unchecked() -> None:
    c = _cluster()
    c.fold(_keyed("t1"), t=1)
    c.fold(TaskCancelRequested("t1", "A"), t=2)
    assert [type(e) for e in cancel_requested(c.state, at(2))] == [TaskCancelled]
    assert _check(c, 2) == []
    c.fold(_keyed("t2"), t=3)  # the key was never claimed: t2 takes it
    assert _check(c, 3) == [IdempotencyChecked("t2", "A", "k1", "t2", "d1")]
