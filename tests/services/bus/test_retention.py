"""Retention on the embedded log: old heartbeats go; old task records go once every
consumer group and every checkpoint reading them has passed them; the last record of
each partition stays (offsets are never reused); the space goes back to the disk."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

from events import topics
from services.bus import EmbeddedBus, Outgoing
from services.bus.retention import (
    VACUUM_PAGES,
    Retention,
    give_back_space,
    prune,
    retention_policy,
)
from services.checkpoints import Checkpoint, EmbeddedCheckpoints

LATER_MS = int(time.time() * 1000) + 3_600_000
FREE = {"beats": Retention(0, guarded=False)}
GUARDED = {"tasks": Retention(0, guarded=True)}


def _ends(records: list) -> dict[int, int]:  # type: ignore[type-arg]
    ends: dict[int, int] = {}
    for record in records:
        ends[record.partition] = max(ends.get(record.partition, -1), record.offset + 1)
    return ends


def test_heartbeats_go_by_age_and_tasks_by_age_once_read() -> None:
    policy = retention_policy(2)
    assert set(policy) == {topics.LIVENESS, topics.TASKS}
    assert not policy[topics.LIVENESS].guarded and policy[topics.TASKS].guarded
    assert policy[topics.TASKS].keep_ms == 2 * 3_600_000


async def test_prune_keeps_the_last_record_of_each_partition(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    async with EmbeddedBus(path, partitions=4) as bus:
        await bus.publish_many([Outgoing("beats", f"n{i % 9}", b"x") for i in range(200)])
        await bus.publish_many([Outgoing("history", f"k{i}", b"y") for i in range(20)])
        before = [r async for r in bus.replay(["beats"])]
        ends = _ends(before)
        deleted = await prune(bus, FREE, now_ms=LATER_MS)
        after = [r async for r in bus.replay(["beats"])]
        assert deleted == len(before) - len(ends)
        assert sorted((r.partition, r.offset + 1) for r in after) == sorted(ends.items())
        assert len([r async for r in bus.replay(["history"])]) == 20
    async with EmbeddedBus(path, partitions=4) as bus:  # a restart: offsets go on
        for record in await bus.publish_many([Outgoing("beats", f"n{i}", b"z") for i in range(9)]):
            assert record.offset >= ends[record.partition]


async def test_nothing_younger_than_the_retention_goes(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2) as bus:
        await bus.publish_many([Outgoing("beats", f"n{i}", b"x") for i in range(30)])
        assert await prune(bus, {"beats": Retention(60_000, guarded=False)}) == 0
        assert len([r async for r in bus.replay(["beats"])]) == 30


async def test_tasks_go_only_below_every_group_and_checkpoint(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", partitions=1) as bus:
        await bus.publish_many([Outgoing("tasks", f"t{i}", b"x") for i in range(100)])
        # No group has read anything: nothing goes, however old.
        assert await prune(bus, GUARDED, now_ms=LATER_MS) == 0
        async with bus.consumer(["tasks"], group="fast") as fast:
            await fast.fetch(100, timeout_s=1)
            await fast.commit({("tasks", 0): 80})
        async with bus.consumer(["tasks"], group="slow") as slow:
            await slow.fetch(100, timeout_s=1)
            await slow.commit({("tasks", 0): 50})
        store = EmbeddedCheckpoints(bus)
        await store.save(Checkpoint("fold", "v1", {("tasks", 0): 30}, {}))
        await store.save(Checkpoint("other", "v1", {("elsewhere", 0): 1}, {}))  # not a reader
        assert await prune(bus, GUARDED, now_ms=LATER_MS) == 30  # below the checkpoint
        await store.save(Checkpoint("fold", "v1", {("tasks", 0): 90}, {}))
        assert await prune(bus, GUARDED, now_ms=LATER_MS) == 20  # below the slow group
        left = [r.offset async for r in bus.replay(["tasks"])]
        assert left == list(range(50, 100))


async def test_pruned_space_goes_back_to_the_file_system(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    async with EmbeddedBus(path, partitions=1) as bus:
        await bus.publish_many([Outgoing("beats", "n", b"x" * 4000) for _ in range(3000)])
        await give_back_space(bus)
        full = path.stat().st_size
        await prune(bus, FREE, now_ms=LATER_MS)
        assert await give_back_space(bus) > 0
        assert path.stat().st_size < full / 4


async def test_publishes_go_on_while_space_is_given_back(tmp_path: Path) -> None:
    """The vacuum runs in steps on the bus's writer: a publish queued meanwhile is written
    between two steps, not after the whole vacuum (a big file once starved every write
    for minutes)."""
    path = tmp_path / "bus.sqlite3"
    async with EmbeddedBus(path, partitions=1) as bus:
        for _ in range(4):
            await bus.publish_many([Outgoing("beats", "n", b"x" * 4000) for _ in range(3000)])
        await prune(bus, FREE, now_ms=LATER_MS)
        free = await asyncio.to_thread(_free_pages, path)
        vacuum = asyncio.create_task(give_back_space(bus))
        while await asyncio.to_thread(_free_pages, path) == free:  # noqa: ASYNC110 - first step
            await asyncio.sleep(0.001)
        await bus.publish("beats", "n", b"after")
        assert not vacuum.done()
        assert await vacuum > 3 * VACUUM_PAGES


def _free_pages(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA freelist_count").fetchone()[0])
