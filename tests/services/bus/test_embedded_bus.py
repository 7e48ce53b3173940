"""What only the embedded bus promises: persistence of the file, cross-process visibility,
an idle consumer that does not spin, a full disk that refuses writes but is ridden out."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from services.bus import BusUnavailable, EmbeddedBus, Outgoing
from services.bus.embedded import _seq_before
from tests.support.disk import fill_disk, make_room


async def test_log_and_commits_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    async with EmbeddedBus(path, partitions=3) as bus:
        first = await bus.publish_many([Outgoing("t", f"k{i}", b"v") for i in range(30)])
        async with bus.consumer(["t"], group="g") as consumer:
            assert len(await consumer.fetch(20, timeout_s=0.1)) == 20
            await consumer.commit()
    async with EmbeddedBus(path, partitions=9) as bus:
        assert await bus.partitions_of("t") == 3  # changing the setting must not move keys
        again = await bus.publish("t", "k0", b"after")
        same_key = [r for r in first if r.key == "k0"]
        assert again.partition == same_key[0].partition
        assert again.offset == max(r.offset for r in first if r.partition == again.partition) + 1
        async with bus.consumer(["t"], group="g") as consumer:
            rest = await consumer.fetch(100, timeout_s=0.1)
            assert len(rest) == 11


async def test_concurrent_publishes_share_transactions(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3") as bus:
        await asyncio.gather(*(bus.publish("t", f"k{i}", b"v") for i in range(500)))
        assert bus.stats.records_written == 500
        assert bus.stats.transactions < 500


async def test_records_written_by_another_process_reach_an_idle_consumer(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    script = (
        "import asyncio, sys\n"
        "from services.bus import EmbeddedBus\n"
        "async def main():\n"
        "    async with EmbeddedBus(sys.argv[1]) as bus:\n"
        "        await bus.publish('t', 'other', b'from-child')\n"
        "asyncio.run(main())\n"
    )
    async with EmbeddedBus(path, poll_interval_s=0.05) as bus, bus.consumer(["t"]) as consumer:
        assert await consumer.fetch(10, timeout_s=0.05) == []
        waiting = asyncio.create_task(consumer.fetch(10, timeout_s=30))
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", script, str(path)], check=True
        )
        got = await asyncio.wait_for(waiting, 30)
        assert [r.value for r in got] == [b"from-child"]


async def test_idle_consumer_reads_the_log_only_at_the_poll_interval(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", poll_interval_s=0.2) as bus:
        async with bus.consumer(["t"]) as consumer:
            await consumer.fetch(10, timeout_s=0.01)
            before = bus.stats.reads
            assert await consumer.fetch(10, timeout_s=1.0) == []
            reads = bus.stats.reads - before
        # About five polls in one second; a busy loop would make thousands.
        assert 1 <= reads <= 12


class _CommitsBetweenStatements:
    """A real SQLite connection, and after its first `SELECT MIN(seq)` another connection
    commits a record: the interleaving of a consumer starting beside a publisher."""

    def __init__(self, conn: sqlite3.Connection, other: sqlite3.Connection) -> None:
        self.conn, self.other, self.done = conn, other, False

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        cursor = self.conn.execute(sql, *args)
        if sql.startswith("SELECT MIN(seq)") and not self.done:
            self.done = True
            self.other.execute(
                "INSERT INTO records (topic, partition, offset, key, value, ts_ms)"
                " VALUES ('t', 0, 0, 'k', x'00', 0)"
            )
        return cursor


async def test_a_consumer_starting_beside_a_commit_does_not_skip_it(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    async with EmbeddedBus(path, partitions=2) as bus:
        await bus.publish("other", "k", b"v")  # the log is not empty
        await bus.partitions_of("t")
    conn = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None)
    positions = {("t", 0): 0, ("t", 1): 0}
    start = _seq_before(_CommitsBetweenStatements(conn, other), positions)  # type: ignore[arg-type]
    (inserted,) = conn.execute("SELECT seq FROM records WHERE topic = 't'").fetchone()
    assert start < inserted  # the scan starts below the record committed meanwhile


async def test_a_full_disk_refuses_writes_stores_nothing_of_them_and_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "services.bus.embedded")
    big = b"x" * 10_000  # a record of a few pages
    async with (
        EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2) as bus,
        bus.consumer(["t"], group="g") as consumer,
    ):
        await bus.publish_many([Outgoing("t", f"before-{i}", big) for i in range(10)])
        await fill_disk(bus)
        refused = await asyncio.gather(
            *(bus.publish("t", f"during-{i}", big) for i in range(50)), return_exceptions=True
        )
        assert all(isinstance(r, BusUnavailable) for r in refused), refused
        assert "database or disk is full" in str(refused[0])
        with pytest.raises(BusUnavailable):
            await bus.publish_many([Outgoing("t", "small", b"v"), Outgoing("t", "large", big)])
        with pytest.raises(BusUnavailable):
            await bus.publish("t", "tiny", b"")
        fetched = await consumer.fetch(100, timeout_s=0.2)  # reads go on
        assert sorted(r.key for r in fetched) == sorted(f"before-{i}" for i in range(10))

        await make_room(bus)
        after = await bus.publish("t", "after", big)
        assert [r.key for r in await consumer.fetch(100, timeout_s=5)] == ["after"]
        await asyncio.sleep(2.1)  # no write failed for a while: the outage is over
        await consumer.commit()
        stored = [r async for r in bus.replay(["t"])]
    assert {r.key for r in stored} == {f"before-{i}" for i in range(10)} | {"after"}
    for partition in (0, 1):  # nothing refused took an offset
        offsets = [r.offset for r in stored if r.partition == partition]
        assert offsets == list(range(len(offsets)))
    assert after.offset == len([r for r in stored if r.partition == after.partition]) - 1
    lines = [r.getMessage() for r in caplog.records if r.name == "services.bus.embedded"]
    assert len(lines) == 2, lines  # not one a write
    assert lines[0].startswith("embedded bus: writes are failing (database or disk is full)")
    assert lines[1].startswith("embedded bus: writes succeed again")
    assert int(re.findall(r"(\d+) refused", lines[1])[0]) >= 52  # and the ballast's


async def test_the_memory_of_recent_writes_is_capped_in_bytes(tmp_path: Path) -> None:
    megabyte = b"x" * (1 << 20)
    async with EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2) as bus:
        for _ in range(10):
            await bus.publish_many([Outgoing("big", f"k{i}", megabyte) for i in range(10)])
        held = [s for s in range(101) if bus.recent(s, ("big",), 1000) is not None]
        assert held, "the latest writes are held"
        oldest = held[0]  # the memory reaches back to seq oldest + 1
        assert (100 - oldest) * len(megabyte) <= 64 << 20
        assert bus.recent(0, ("big",), 1000) is None  # the file has the rest
