"""The scheduler resumes from its checkpoint: after a crash it folds only the log after
the checkpoint and ends in the state a full replay gives; a checkpoint of another code
version is replayed over, never read. On the embedded log and on Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import Envelope, TaskDispatched, topics
from services.bus import Bus, decode_record, publish_events
from services.checkpoints import Checkpoint, checkpoint_store
from services.scheduler.runner import CHECKPOINT, SchedulerRunner
from services.scheduler.state import ClusterState
from services.settings import Settings
from tests.services.bus.conftest import bus  # noqa: F401 - the fixture: each bus in turn
from tests.services.scheduler.builders import submitted, workspace_registered
from tests.services.scheduler.test_faust_scheduler import ready_replica, wait_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, checkpoint_interval_s=1, scheduler_tick_s=0.05,
                    node_lost_after_s=3600)  # fmt: skip


async def _log(source: Bus) -> list[Envelope]:
    return [decode_record(r) async for r in source.replay(topics.ALL_TOPICS)]


@contextlib.asynccontextmanager
async def _running(runner: SchedulerRunner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        task.cancel()  # a crash: no save on the way out
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _caught_up(source: Bus, runner: SchedulerRunner) -> bool:
    ends: dict[tuple[str, int], int] = {}
    async for record in source.replay(topics.ALL_TOPICS):
        ends[(record.topic, record.partition)] = record.offset + 1
    return all(runner.checkpoints.positions.get(p, 0) >= end for p, end in ends.items())


def _summary(state: ClusterState) -> tuple[object, ...]:
    return (
        sorted(state.tasks), sorted(state.assignments), sorted(state.deployments),
        sorted(t.task_id for t in state.queue), sorted(state.workspaces), sorted(state.nodes),
    )  # fmt: skip


async def test_a_restart_folds_only_the_tail_after_its_checkpoint(
    bus: Bus,  # noqa: F811
    settings: Settings,
) -> None:
    # Two slots; four tasks: two dispatched, two waiting when the checkpoint is taken.
    tasks = [submitted(f"t{i}", "ws") for i in range(4)]
    history = [workspace_registered("ws", replicas_min=0, concurrency=2),
               *ready_replica("n1", "ws"), *tasks]  # fmt: skip
    await publish_events(bus, history)
    first = SchedulerRunner(bus, settings)
    async with _running(first):
        await wait_for(lambda: first.checkpoints.saves >= 1, "a checkpoint")
        first.checkpoints.interval_s = 10**9  # the checkpoint stays older than the tail
        tail = [submitted(f"late{i}", "ws") for i in range(3)]
        await publish_events(bus, tail)
        await wait_for(lambda: "late2" in first.state.tasks, "the tail folded")
    total = len(await _log(bus))

    second = SchedulerRunner(bus, settings)
    async with _running(second):
        for _ in range(200):
            if await _caught_up(bus, second):
                break
            await asyncio.sleep(0.05)
    assert 0 < second.checkpoints.records < total
    replayed = ClusterState.from_envelopes(await _log(bus))
    assert _summary(second.state) == _summary(replayed)
    dispatches = Counter(e.event.task_id for e in await _log(bus)
                         if isinstance(e.event, TaskDispatched))  # fmt: skip
    assert set(dispatches.values()) == {1}  # the restart dispatched nothing twice


async def test_a_checkpoint_of_another_version_is_replayed_over(
    bus: Bus,  # noqa: F811
    settings: Settings,
) -> None:
    await publish_events(bus, [workspace_registered("ws", replicas_min=0),
                               *ready_replica("n1", "ws"), submitted("t", "ws")])  # fmt: skip
    store = checkpoint_store(bus)
    ends = {(topics.TASKS, p): 10**6 for p in range(8)}
    await store.save(Checkpoint(CHECKPOINT, "scheduler/0/older", ends, "not a state"))
    runner = SchedulerRunner(bus, settings)
    async with _running(runner):
        await wait_for(lambda: "t" in runner.state.assignments, "the task dispatched")
    assert runner.checkpoints.records >= 5  # everything, from the start
