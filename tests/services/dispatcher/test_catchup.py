"""The dispatcher is `ready` once it has read its partitions up to their ends as of its
start and released what it held back; so is one resuming where its group stopped."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from services.bus import publish_events
from services.dispatcher import Dispatcher
from services.readiness import Component
from tests.services.dispatcher.test_restart import Node, _dispatch, _wait, node  # noqa: F401
from tests.services.scheduler.builders import completed
from tests.support.held import HeldBus


async def test_ready_after_reading_the_log_it_started_with(
    tmp_path: Path,
    node: Node,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = HeldBus(tmp_path / "bus.sqlite3", batch=3)
    await bus.start()
    ended = [_dispatch(f"done-{i}", node.port, "/quick") for i in range(20)]
    await publish_events(bus, [*ended, *(completed(d) for d in ended)])
    await publish_events(bus, [_dispatch("in-flight", node.port, "/quick")])
    ready = Component("dispatcher")
    with caplog.at_level(logging.INFO, logger="services.bus.progress"):
        running = asyncio.create_task(Dispatcher(bus, ready=ready).run())
        await asyncio.sleep(0)
        assert not ready.caught_up  # held at its first fetch
        bus.released.set()
        await _wait(lambda: ready.caught_up)
        await _wait(lambda: node.calls["in-flight"] == 1)
        await asyncio.sleep(0.5)  # a few commit rounds
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert dict(node.calls) == {"in-flight": 1}  # what ended is not called again
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("dispatcher: caught up, 41 of 41 records") for line in said), said

    again = Component("dispatcher")  # from the group's commits, near the ends now
    running = asyncio.create_task(Dispatcher(bus, ready=again).run())
    await _wait(lambda: again.caught_up)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await bus.close()
