"""The runner catches up before it decides: it folds the log up to the ends it had when
the runner started, whatever sizes the fetches come in, logging "x of y records"; only
then is it `ready`, and only then does it decide."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import TaskDispatched, topics
from services.bus import decode_record, publish_events
from services.readiness import Component
from services.scheduler.runner import SchedulerRunner
from services.settings import Settings
from tests.services.scheduler.builders import dispatched, submitted, workspace_registered
from tests.services.scheduler.test_faust_scheduler import ready_replica, wait_for
from tests.support.held import HeldBus


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, checkpoint_interval_s=1, scheduler_tick_s=0.05,
                    node_lost_after_s=3600)  # fmt: skip


@contextlib.asynccontextmanager
async def _running(runner: SchedulerRunner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_runner_fed_small_batches_decides_only_on_the_whole_log(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # One slot, taken by t0's dispatch; t1 waits. A runner deciding on part of this log
    # (after a short batch that ends before t0's dispatch) would dispatch t0 again.
    bus = HeldBus(tmp_path / "bus.sqlite3", batch=2)
    await bus.start()
    t0, t1 = submitted("t0", "ws"), submitted("t1", "ws")
    history = [workspace_registered("ws", replicas_min=0), *ready_replica("n1", "ws"),
               t0, dispatched("t0", "ws", "n1", "dep-n1"), t1]  # fmt: skip
    await publish_events(bus, history)
    ready = Component("scheduler")
    runner = SchedulerRunner(bus, settings, ready=ready)
    with caplog.at_level(logging.INFO, logger="services.bus.progress"):
        async with _running(runner):
            await asyncio.sleep(0)  # it has begun, and is held at its first fetch
            assert not ready.caught_up
            bus.released.set()
            await wait_for(lambda: ready.caught_up, "the runner to catch up")
            # A checkpoint is saved after a round of decisions: one round has run.
            await wait_for(lambda: runner.checkpoints.saves >= 1, "a round after catching up")
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"scheduler: caught up, {len(history)} of {len(history)} ")
               for line in said), said  # fmt: skip
    logged = [decode_record(r).event async for r in bus.replay([topics.TASKS])]
    assert [e.task_id for e in logged if isinstance(e, TaskDispatched)] == ["t0"]
    assert [t.task_id for t in runner.state.queue] == ["t1"]  # waits for the slot
    await bus.close()
