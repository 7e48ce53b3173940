"""Retention on the embedded log: records older than their topic's retention are deleted,
in small transactions so publishes never wait long behind a prune, and the freed pages
are given back to the file system.

- Liveness (heartbeats) goes by age alone.
- History (the task topic) goes by age once every reader has passed it: below the lowest
  committed offset of every consumer group on that partition (a partition no group has
  committed on keeps everything) and below the position of every checkpoint that reads
  the topic. The archive is ClickHouse's; a fold resumes from its checkpoint.
- The last record of every partition is always kept: the next offset of a partition is
  one past its highest stored record, so deleting them all would let offsets be reused
  after a restart (and committed positions would point past new records).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from events import topics
from services.bus.embedded import EmbeddedBus
from services.bus.errors import BusError
from services.bus.topology import LIVENESS_RETENTION_MS
from services.checkpoints.snapshot import header_of

log = logging.getLogger(__name__)

PRUNE_BATCH = 5_000
"""Records deleted per transaction: a few milliseconds of the writer's time."""
VACUUM_PAGES = 1_024
"""Pages given back to the file system per writer transaction (4 MiB of 4 KiB pages,
tens of milliseconds)."""
_EVERYTHING = 1 << 62


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a topic keeps records, and whether its readers must have passed them."""

    keep_ms: int
    guarded: bool


def retention_policy(log_retention_hours: float) -> dict[str, Retention]:
    """The embedded log's retention: heartbeats for minutes, tasks for the working window."""
    return {
        topics.LIVENESS: Retention(LIVENESS_RETENTION_MS, guarded=False),
        topics.TASKS: Retention(int(log_retention_hours * 3_600_000), guarded=True),
    }


def _floors(conn: sqlite3.Connection, topic: str, partitions: int) -> dict[int, int]:
    """Per partition of `topic`: the offset below which every reader has passed."""
    rows = conn.execute(
        "SELECT partition, MIN(next_offset) FROM group_offsets WHERE topic = ? GROUP BY partition",
        (topic,),
    ).fetchall()
    groups = {int(p): int(o) for p, o in rows}
    floors = {partition: groups.get(partition, -1) for partition in range(partitions)}
    try:
        checkpoints = conn.execute("SELECT value FROM checkpoints").fetchall()
    except sqlite3.OperationalError:  # no checkpoint table: none was saved
        checkpoints = []
    for (value,) in checkpoints:
        positions = header_of(bytes(value)).get("positions", [])
        mine = {int(p): int(o) for t, p, o in positions if t == topic}
        if mine:  # a reader of this topic: a partition it has not read is held whole
            for partition in floors:
                floors[partition] = min(floors[partition], mine.get(partition, 0))
    return floors


def _delete_batch(
    conn: sqlite3.Connection, topic: str, partition: int, before_ms: int, below: int
) -> int:
    cursor = conn.execute(
        "DELETE FROM records WHERE seq IN ("
        " SELECT seq FROM records WHERE topic = ? AND partition = ? AND ts_ms < ?"
        " AND offset < ? AND offset < (SELECT MAX(offset) FROM records"
        "  WHERE topic = ? AND partition = ?)"
        " LIMIT ?)",
        (topic, partition, before_ms, below, topic, partition, PRUNE_BATCH),
    )
    return int(cursor.rowcount)


async def prune(
    bus: EmbeddedBus, policy: Mapping[str, Retention], now_ms: int | None = None
) -> int:
    """Delete what `policy` lets go as of `now_ms` (default now); returns how many."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    deleted = 0
    for topic, retention in policy.items():
        partitions = await bus.partitions_of(topic)
        if retention.guarded:
            floors = await bus.read(functools.partial(_floors, topic=topic, partitions=partitions))
        else:
            floors = dict.fromkeys(range(partitions), _EVERYTHING)
        before_ms = now_ms - retention.keep_ms
        for partition, below in floors.items():
            batch = functools.partial(_delete_batch, topic=topic, partition=partition,
                                      before_ms=before_ms, below=below)  # fmt: skip
            while below > 0:
                count: int = await bus.write(batch)
                deleted += count
                if count < PRUNE_BATCH:
                    break
    return deleted


async def give_back_space(bus: EmbeddedBus) -> int:
    """Return the file's free pages to the file system; how many were freed. Each step of
    `VACUUM_PAGES` pages is one of the bus writer's transactions, queued like a publish:
    publishes interleave with the steps, never waiting behind the whole vacuum (a
    connection of its own would hold SQLite's write lock for as long as the file is
    large, and starve them). Then the WAL is truncated."""
    before = left = int(await bus.read(_free_pages))
    while left:
        now = int(await bus.write(_vacuum_step))
        if now >= left:
            break  # a file created without auto_vacuum: its free pages are reused
        left = now
    await asyncio.to_thread(_truncate_wal, bus.path)
    return before - left


def _free_pages(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def _vacuum_step(conn: sqlite3.Connection) -> int:
    # Each step of the statement frees one page; the module steps an execute only once.
    for _ in range(VACUUM_PAGES):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return _free_pages(conn)


def _truncate_wal(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        with contextlib.suppress(sqlite3.OperationalError):  # busy: the next round will
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def keep_pruning(
    bus: EmbeddedBus, policy: Mapping[str, Retention], interval_s: float = 30.0
) -> None:
    """Prune every `interval_s` until cancelled; a failed prune is logged and retried on
    the next round (a full disk must not stop the process)."""
    while True:
        try:
            deleted = await prune(bus, policy)
            if deleted:
                freed = await give_back_space(bus)
                log.info("retention deleted %d records, gave back %d pages", deleted, freed)
        except (BusError, sqlite3.Error) as exc:
            log.warning("retention could not prune the log (again in %.0fs): %s", interval_s, exc)
        await asyncio.sleep(interval_s)
