"""The projector is `ready` once what the log held at its start (from its group's
position) is written, logging "x of y records" on the way; a projector whose group is
already at the ends is ready at once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from projections import ProjectionWriter, Projector, event_count
from services.bus import publish_events
from services.readiness import Component
from tests.support.held import HeldBus

from .builders import mixed_history
from .test_projector import running, until


def _projector(bus: HeldBus, writer: ProjectionWriter, ready: Component) -> Projector:
    return Projector(bus, writer, fetch_timeout_s=0.05, retry_min_s=0.02, linger_s=0,
                     ready=ready)  # fmt: skip


async def test_ready_once_the_log_it_started_with_is_written(
    ch_client: Client, writer: ProjectionWriter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bus = HeldBus(tmp_path / "bus.sqlite3", batch=3)  # several batches to write
    await bus.start()
    history = mixed_history()
    await publish_events(bus, history)
    ready = Component("projector")
    with caplog.at_level(logging.INFO, logger="services.bus.progress"):
        async with running(_projector(bus, writer, ready)) as projector:
            await asyncio.sleep(0)
            assert not ready.caught_up  # held at its first fetch
            bus.released.set()
            await until(lambda: ready.caught_up)
            assert event_count(ch_client, writer.database) == len(history)
            await until(lambda: projector.stats.committed == len(history))
    said = [r.getMessage() for r in caplog.records]
    total = f"{len(history)} of {len(history)} records"
    assert any(line.startswith(f"projector: caught up, {total}") for line in said), said

    again = Component("projector")  # the group committed everything: nothing to catch up
    async with running(_projector(bus, writer, again)) as projector:
        await until(lambda: again.caught_up)
        assert projector.stats.records == 0
    await bus.close()
