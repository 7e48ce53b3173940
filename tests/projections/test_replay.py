"""Replaying events changes no answer: duplicates, order, batches, merges, rebuilds from
the archive."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import EVENT_TYPES, Envelope
from projections import (
    ProjectionWriter,
    TaskState,
    event_count,
    rebuild_from_archive,
    task_detail,
    usage,
)
from tests.events.strategies import envelopes

from .builders import (
    EVER,
    T0,
    TASKS,
    WORKSPACES,
    cancelled,
    completed,
    dispatched,
    expired,
    failed,
    fresh_database,
    mixed_history,
    submitted,
)
from .snapshot import merge_everything, snapshot


def test_writing_twice_in_any_order_changes_nothing(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    history = mixed_history()
    writer.write(history)
    once = snapshot(ch_client, database, WORKSPACES, TASKS)
    assert once["events"] == len(history)
    assert once["lists"] == {"ws-a": ["T1", "T4", "T6", "T3"], "ws-b": ["T2", "T5"]}

    shuffled = history[:]
    random.Random(3).shuffle(shuffled)
    for start in range(0, len(shuffled), 4):
        writer.write(shuffled[start : start + 4])
    assert snapshot(ch_client, database, WORKSPACES, TASKS) == once

    merge_everything(ch_client, database)
    assert snapshot(ch_client, database, WORKSPACES, TASKS) == once


def copy_archive(client: Client, source: str, target: str) -> None:
    """`target` gets the archive rows of `source` (copies of replayed events included)."""
    client.command(f"INSERT INTO {target}.events SELECT * FROM {source}.events")


def test_rebuild_from_the_archive_gives_the_same_answers(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    history = mixed_history()
    writer.write(history)
    writer.write(history[:5])  # the archive may hold replayed copies not merged yet
    direct = snapshot(ch_client, database, WORKSPACES, TASKS)

    with fresh_database(ch_client) as other:  # the archive alone
        copy_archive(ch_client, database, other)
        assert rebuild_from_archive(ch_client, other) == len(history)
        assert snapshot(ch_client, other, WORKSPACES, TASKS) == direct
        assert rebuild_from_archive(ch_client, other, batch_size=3) == len(history)
        assert snapshot(ch_client, other, WORKSPACES, TASKS) == direct
    assert rebuild_from_archive(ch_client, database, batch_size=2) == len(history)  # in place
    assert snapshot(ch_client, database, WORKSPACES, TASKS) == direct


# Random task histories --------------------------------------------------------------------

_TERMINALS = ("completed", "failed", "cancelled", "expired")


@dataclass(frozen=True)
class Story:
    """One task: its events, and what the first terminal event (if any) was."""

    task_id: str
    workspace: str
    events: list[Envelope]
    first_terminal: str | None
    gpu_us: int


@st.composite
def stories(draw: st.DrawFn, index: int) -> Story:
    task, ws = f"task-{index}", draw(st.sampled_from(WORKSPACES))
    start = T0 + timedelta(seconds=draw(st.integers(0, 3 * 86_400)))
    events = [submitted(task, workspace=ws, seq=index, when=start)]
    offsets = st.integers(1, 10_000_000).map(lambda us: start + timedelta(microseconds=us))
    if draw(st.booleans()):
        events.append(dispatched(task, draw(offsets), workspace=ws))
    if draw(st.booleans()):
        events.append(failed(task, draw(offsets), retryable=True, workspace=ws))
    ends: list[tuple[Envelope, str, int]] = []
    for kind in draw(st.lists(st.sampled_from(_TERMINALS), max_size=3)):
        when, event_id = draw(offsets), draw(st.sampled_from("abcdef")) + draw(st.uuids()).hex
        if kind == "completed":
            gpus, work = draw(st.integers(0, 8)), draw(st.integers(0, 5_000_000))
            began = when - timedelta(microseconds=work)
            end = completed(
                task, began, when, workspace=ws, gpu_count=gpus, when=when, event_id=event_id
            )
            ends.append((end, kind, gpus * work))
        elif kind == "failed":
            ends.append(
                (failed(task, when, retryable=False, workspace=ws, event_id=event_id), kind, 0)
            )
        elif kind == "cancelled":
            ends.append((cancelled(task, when, workspace=ws, event_id=event_id), kind, 0))
        else:
            ends.append((expired(task, when, workspace=ws, event_id=event_id), kind, 0))
    events += [end for end, _, _ in ends]
    first = min(ends, key=lambda e: (e[0].occurred_at, e[0].event_id), default=None)
    return Story(task, ws, events, first[1] if first else None, first[2] if first else 0)


histories = st.integers(1, 6).flatmap(lambda n: st.tuples(*(stories(i) for i in range(n))))
_STATE = {
    "completed": TaskState.COMPLETED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
    "expired": TaskState.EXPIRED,
}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(story_set=histories, seed=st.integers(0, 2**16), batch=st.integers(4, 40))
def test_random_histories_replay_to_the_same_answers(
    ch_client: Client, story_set: tuple[Story, ...], seed: int, batch: int
) -> None:
    history = [e for story in story_set for e in story.events]
    tasks = [story.task_id for story in story_set]
    with fresh_database(ch_client) as database:
        writer = ProjectionWriter(ch_client, database)
        writer.write(history)
        once = snapshot(ch_client, database, WORKSPACES, tasks)

        for story in story_set:  # the model: the first terminal event wins
            detail = task_detail(ch_client, database, story.task_id)
            assert detail is not None
            if story.first_terminal is not None:
                assert detail.state is _STATE[story.first_terminal]
            else:
                assert detail.state in (TaskState.QUEUED, TaskState.RUNNING)
        completed_ones = [s for s in story_set if s.first_terminal == "completed"]
        assert sum(row.tasks for row in usage(ch_client, database, "workspace", *EVER)) == len(
            completed_ones
        )

        replay = history * 2
        random.Random(seed).shuffle(replay)
        for start in range(0, len(replay), batch):
            writer.write(replay[start : start + batch])
        assert snapshot(ch_client, database, WORKSPACES, tasks) == once


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(story_set=histories, seed=st.integers(0, 2**16), batch=st.integers(1, 12))
def test_random_histories_rebuild_from_the_archive_to_the_same_answers(
    ch_client: Client, story_set: tuple[Story, ...], seed: int, batch: int
) -> None:
    history = [e for story in story_set for e in story.events]
    tasks = [story.task_id for story in story_set]
    replay = history * 2
    random.Random(seed).shuffle(replay)
    with fresh_database(ch_client) as database, fresh_database(ch_client) as archive_only:
        writer = ProjectionWriter(ch_client, database)
        for start in range(0, len(replay), 7):
            writer.write(replay[start : start + 7])
        projected = snapshot(ch_client, database, WORKSPACES, tasks)

        copy_archive(ch_client, database, archive_only)
        assert rebuild_from_archive(ch_client, archive_only, batch_size=batch) == len(history)
        assert snapshot(ch_client, archive_only, WORKSPACES, tasks) == projected
        merge_everything(ch_client, archive_only)
        assert snapshot(ch_client, archive_only, WORKSPACES, tasks) == projected


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda name: envelopes(EVENT_TYPES[name])),
        min_size=1,
        max_size=30,
    )
)
def test_any_valid_event_can_be_written(
    ch_client: Client, database: str, batch: list[Envelope]
) -> None:
    before = event_count(ch_client, database)
    written = ProjectionWriter(ch_client, database).write(batch)
    assert written == len({e.event_id for e in batch})
    assert event_count(ch_client, database) - before <= written
