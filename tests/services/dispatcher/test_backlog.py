"""`Backlog`: which held dispatches an outcome later in the partition settles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import (
    Event,
    TaskCancelled,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
)
from services.bus import Record
from services.dispatcher import Backlog

_NOW = datetime(2024, 4, 11, tzinfo=UTC)


def _dispatched(task: str, attempt: int = 1) -> TaskDispatched:
    return TaskDispatched(task, "w", attempt, "n", "127.0.0.1", "0x", "d", 9000)


def _completed(task: str, attempt: int = 1) -> TaskCompleted:
    return TaskCompleted(task, "w", attempt, "n", "127.0.0.1", "0x", 200, "", _NOW, _NOW, "", 1)


def _failed(task: str, attempt: int = 1, *, retryable: bool) -> TaskFailed:
    return TaskFailed(task, "w", attempt, "n", "node_error", "", retryable)


def _record(offset: int) -> Record:
    return Record("ngpu.tasks", 0, offset, "k", b"", 0)


def _run(events: list[Event], end: int = 1_000) -> list[tuple[str, int]]:
    """Feed `events` at offsets 0, 1, … as the worker does; what is released at the end."""
    backlog = Backlog(end)
    for offset, event in enumerate(events):
        backlog.settle(event)
        if isinstance(event, TaskDispatched):
            backlog.hold(event, _record(offset))
    return [(d.task_id, d.attempt) for d, _ in backlog.release()]


@pytest.mark.parametrize(
    ("events", "released"),
    [
        ([_dispatched("a")], [("a", 1)]),
        ([_dispatched("a"), _completed("a")], []),
        ([_dispatched("a"), _failed("a", retryable=False)], []),
        ([_dispatched("a"), _failed("a", retryable=True)], []),
        ([_dispatched("a"), TaskCancelled("a", "w", "")], []),
        ([_dispatched("a"), TaskExpired("a", "w", 1.0)], []),
        ([_dispatched("a"), TaskRetried("a", "w", 2, (), "")], [("a", 1)]),
        ([_dispatched("a"), _completed("b")], [("a", 1)]),
        # A retryable failure settles its attempt only; the next one is still to call.
        ([_dispatched("a"), _failed("a", retryable=True), _dispatched("a", 2)], [("a", 2)]),
        ([_dispatched("a"), _dispatched("a", 2), _failed("a", 1, retryable=True)], [("a", 2)]),
        # An outcome of another attempt does not settle this one; an end of the task does.
        ([_dispatched("a", 2), _failed("a", 1, retryable=True)], [("a", 2)]),
        ([_dispatched("a"), _dispatched("a", 2), _completed("a", 2)], []),
        ([_dispatched("b"), _dispatched("a"), _dispatched("c")], [("b", 1), ("a", 1), ("c", 1)]),
    ],
)
def test_what_is_released(events: list[Event], released: list[tuple[str, int]]) -> None:
    assert _run(events) == released


def test_an_attempt_is_held_once_and_settled_with_its_record() -> None:
    backlog = Backlog(end=3)
    assert backlog.hold(_dispatched("a"), _record(0))
    assert not backlog.hold(_dispatched("a"), _record(1))
    assert len(backlog) == 1
    assert backlog.settle(_completed("a")) == [_record(0)]
    assert len(backlog) == 0 and backlog.release() == []


def test_the_record_before_the_end_reaches_it() -> None:
    backlog = Backlog(end=5)
    assert [backlog.reached_by(_record(offset)) for offset in (0, 3, 4, 7)] == [
        False,
        False,
        True,
        True,
    ]


_EVENT = st.one_of(
    st.builds(_dispatched, st.sampled_from("abc"), st.integers(1, 3)),
    st.builds(_completed, st.sampled_from("abc"), st.integers(1, 3)),
    st.builds(_failed, st.sampled_from("abc"), st.integers(1, 3), retryable=st.booleans()),
    st.builds(TaskCancelled, st.sampled_from("abc"), st.just("w"), st.just("")),
)


def _settles(event: Event, task: str, attempt: int) -> bool:
    """Whether `event` is an outcome of that attempt or an end of that task."""
    if getattr(event, "task_id", None) != task:
        return False
    if isinstance(event, TaskFailed):
        return event.attempt == attempt or not event.retryable
    return isinstance(event, TaskCompleted | TaskCancelled)  # the task ended


@given(st.lists(_EVENT, max_size=30))
def test_released_is_every_attempt_whose_last_dispatch_has_no_outcome_after_it(
    events: list[Event],
) -> None:
    last: dict[tuple[str, int], int] = {}
    for index, event in enumerate(events):
        if isinstance(event, TaskDispatched):
            last[(event.task_id, event.attempt)] = index
    expected = [
        key for key, index in last.items()
        if not any(_settles(e, *key) for e in events[index + 1 :])
    ]  # fmt: skip
    assert sorted(_run(events)) == sorted(expected)
