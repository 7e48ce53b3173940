"""The projector role on a real embedded bus: writes, commits, restarts, redeliveries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from events import topics
from projections import GROUP, ProjectionWriter, Projector, event_count, task_detail
from services.bus import EmbeddedBus, publish_events

from .builders import TASKS, WORKSPACES, completed_history, fresh_database, mixed_history
from .snapshot import snapshot


async def until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(projector: Projector) -> AsyncIterator[Projector]:
    task = asyncio.create_task(projector.run())
    try:
        yield projector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def projector_on(bus: EmbeddedBus, writer: ProjectionWriter) -> Projector:
    return Projector(bus, writer, fetch_timeout_s=0.05, retry_min_s=0.02)


def expected_answers(client: Client) -> object:
    """The answers of `mixed_history` written straight into a fresh database."""
    with fresh_database(client) as direct:
        ProjectionWriter(client, direct).write(mixed_history())
        return snapshot(client, direct, WORKSPACES, TASKS)


async def test_projects_the_log_and_commits(
    ch_client: Client, writer: ProjectionWriter, bus: EmbeddedBus
) -> None:
    history = mixed_history()
    await publish_events(bus, history)
    async with running(projector_on(bus, writer)) as projector:
        await until(lambda: projector.stats.committed == len(history))
        assert projector.stats.written == len(history)
    assert snapshot(ch_client, writer.database, WORKSPACES, TASKS) == expected_answers(ch_client)
    async with bus.consumer(topics.ALL_TOPICS, group=GROUP) as consumer:
        assert await consumer.fetch(timeout_s=0.05) == []  # everything was committed


async def test_restarted_projector_loses_and_doubles_nothing(
    ch_client: Client, writer: ProjectionWriter, tmp_path: Path
) -> None:
    history = mixed_history()
    first, second = history[:7], history[7:]
    path = tmp_path / "bus.sqlite3"
    async with EmbeddedBus(path, partitions=4, poll_interval_s=0.05) as bus:
        await publish_events(bus, first)
        async with running(projector_on(bus, writer)) as projector:
            await until(lambda: projector.stats.committed == len(first))
    async with EmbeddedBus(path, partitions=4, poll_interval_s=0.05) as bus:  # a new process
        await publish_events(bus, second)
        async with running(projector_on(bus, writer)) as restarted:
            await until(lambda: event_count(ch_client, writer.database) == len(history))
            await until(lambda: restarted.stats.committed == len(second))
            await asyncio.sleep(0.2)
            assert restarted.stats.records == len(second)  # resumed after the commit
    assert snapshot(ch_client, writer.database, WORKSPACES, TASKS) == expected_answers(ch_client)


async def test_redelivered_batch_is_not_double_counted(
    ch_client: Client, writer: ProjectionWriter, bus: EmbeddedBus
) -> None:
    history = mixed_history()
    await publish_events(bus, history)
    writer.write(history)  # a projector that wrote, then died before committing
    async with running(projector_on(bus, writer)) as projector:
        await until(lambda: projector.stats.committed == len(history))
    assert projector.stats.records == len(history)
    assert snapshot(ch_client, writer.database, WORKSPACES, TASKS) == expected_answers(ch_client)


async def test_undecodable_records_are_skipped_and_committed(
    ch_client: Client, writer: ProjectionWriter, bus: EmbeddedBus, caplog: pytest.LogCaptureFixture
) -> None:
    good = completed_history("T1")
    await publish_events(bus, good[:1])
    await bus.publish(topics.TASKS, "T1", b"\x00 not an event")
    await publish_events(bus, good[1:])
    with caplog.at_level(logging.WARNING, logger="projections.projector"):
        async with running(projector_on(bus, writer)) as projector:
            await until(lambda: projector.stats.committed == len(good) + 1)
    assert (projector.stats.skipped, projector.stats.written) == (1, len(good))
    assert "skipping undecodable record ngpu.tasks" in caplog.text
    assert event_count(ch_client, writer.database) == len(good)
    async with running(projector_on(bus, writer)) as restarted:
        await asyncio.sleep(0.3)
    assert restarted.stats.records == 0


async def test_failed_write_is_retried_and_never_committed(
    ch_client: Client, writer: ProjectionWriter, bus: EmbeddedBus
) -> None:
    db = writer.database
    await publish_events(bus, completed_history("T1"))
    async with running(projector_on(bus, writer)) as projector:
        await until(lambda: projector.stats.committed == 3)
        # Break the store in a way recreating the tables cannot repair.
        ch_client.command(f"DROP TABLE {db}.events SYNC")
        ch_client.command(f"CREATE TABLE {db}.events (x UInt8) ENGINE = Memory")
        await publish_events(bus, completed_history("T2"))
        await until(lambda: projector.stats.failed_writes >= 2)
        assert projector.stats.committed == 3
    # The projector died with T2's batch unstored: a new one must get it again.
    ch_client.command(f"DROP TABLE {db}.events SYNC")
    async with running(projector_on(bus, writer)) as restarted:
        await until(lambda: restarted.stats.committed == 3)
    assert restarted.stats.failed_writes == 0
    assert event_count(ch_client, db) == 3  # T2's events (the log was recreated)
    assert task_detail(ch_client, db, "T2") is not None


async def test_flush_writes_a_lingering_batch_at_once(
    ch_client: Client, writer: ProjectionWriter, bus: EmbeddedBus
) -> None:
    projector = Projector(bus, writer, fetch_timeout_s=0.05, linger_s=600)
    async with running(projector):
        await publish_events(bus, completed_history("T1"))
        await asyncio.sleep(0.5)
        assert event_count(ch_client, writer.database) == 0  # held for its linger
        projector.flush()
        await until(lambda: projector.stats.committed == 3)
    assert event_count(ch_client, writer.database) == 3
    assert task_detail(ch_client, writer.database, "T1") is not None


async def test_flushes_cannot_make_batches_more_frequent_than_the_flush_linger(
    writer: ProjectionWriter, bus: EmbeddedBus
) -> None:
    projector = Projector(bus, writer, fetch_timeout_s=0.05, linger_s=600, flush_linger_s=0.5)
    async with running(projector):
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 2.0:  # a reader asking at every event
            n += 1
            await publish_events(bus, completed_history(f"T{n}")[:1])
            projector.flush()
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        await until(lambda: projector.stats.committed == n)
    assert 2 <= projector.stats.batches <= elapsed / 0.5 + 2
