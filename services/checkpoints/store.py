"""Where checkpoints are kept, beside the log they cover: a table in the embedded log's
SQLite file (written in one transaction), or on Kafka a compacted topic per fold, one
key (Kafka Streams keeps its state stores' changelogs the same way); a load there reads
the newest record only.

Each name holds its newest checkpoint only. Any process may load any name: a fold is a
function of the log, so a checkpoint written by one process serves every other."""

from __future__ import annotations

import logging
import sqlite3
from typing import Protocol

from services.bus import Bus, BusError, EmbeddedBus
from services.bus.topology import checkpoint_topic
from services.checkpoints.snapshot import Checkpoint, CheckpointUnreadable, decode, encode

log = logging.getLogger(__name__)

_CREATE = (
    "CREATE TABLE IF NOT EXISTS checkpoints ("
    " name TEXT PRIMARY KEY, value BLOB NOT NULL, written_ms INTEGER NOT NULL)"
)


class CheckpointStore(Protocol):
    async def load(self, name: str, version: str) -> Checkpoint | None:
        """The newest checkpoint of `name` if it was written by code of `version` (else
        None: the caller replays the log; an unreadable one is logged and skipped)."""
        ...

    async def save(self, checkpoint: Checkpoint) -> None:
        """Store `checkpoint` durably, replacing the older one of its name. Raises
        `BusError` when it cannot be stored (the caller keeps folding; the next save
        may succeed)."""
        ...


def _read(name: str, raw: bytes | None, version: str) -> Checkpoint | None:
    if raw is None:
        return None
    try:
        checkpoint = decode(raw, version)
    except CheckpointUnreadable as exc:
        log.warning("checkpoint %s is unreadable; replaying the log instead: %s", name, exc)
        return None
    if checkpoint is None:
        log.info("checkpoint %s is of another code version; replaying the log instead", name)
    return checkpoint


class EmbeddedCheckpoints:
    """Checkpoints in the embedded log's file: a save is one transaction."""

    def __init__(self, bus: EmbeddedBus) -> None:
        self.bus = bus

    async def load(self, name: str, version: str) -> Checkpoint | None:
        def select(conn: sqlite3.Connection) -> bytes | None:
            try:
                row = conn.execute("SELECT value FROM checkpoints WHERE name = ?", (name,))
            except sqlite3.OperationalError:  # no table: nothing was ever saved
                return None
            found = row.fetchone()
            return bytes(found[0]) if found else None

        return _read(name, await self.bus.read(select), version)

    async def save(self, checkpoint: Checkpoint) -> None:
        value = encode(checkpoint)
        written_ms = int(checkpoint.written_at.timestamp() * 1000)

        def store(conn: sqlite3.Connection) -> None:
            conn.execute(_CREATE)
            conn.execute(
                "INSERT OR REPLACE INTO checkpoints (name, value, written_ms) VALUES (?, ?, ?)",
                (checkpoint.name, value, written_ms),
            )

        await self.bus.write(store)


class BusCheckpoints:
    """Checkpoints as records of their fold's topic (one key, so one partition); the
    newest record is the checkpoint."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def load(self, name: str, version: str) -> Checkpoint | None:
        topic = checkpoint_topic(name)
        async with self.bus.consumer([topic], group=None, start="latest") as probe:
            ends = {p: end for p, end in (await probe.ends()).items() if end > 0}
        if not ends:
            return None
        last = {p: end - 1 for p, end in ends.items()}
        newest: bytes | None = None
        async with self.bus.consumer([topic], group=None, start="latest", positions=last) as tail:
            left = dict(ends)
            while left:
                records = await tail.fetch(10, timeout_s=5.0)
                if not records:
                    raise BusError(f"the newest checkpoint of {name} could not be read")
                for record in records:
                    newest = record.value
                    if record.offset + 1 >= left.get((record.topic, record.partition), 0):
                        left.pop((record.topic, record.partition), None)
        return _read(name, newest, version)

    async def save(self, checkpoint: Checkpoint) -> None:
        topic = checkpoint_topic(checkpoint.name)
        await self.bus.publish(topic, checkpoint.name, encode(checkpoint))


def checkpoint_store(bus: Bus) -> CheckpointStore:
    """The store that fits `bus`."""
    if isinstance(bus, EmbeddedBus):
        return EmbeddedCheckpoints(bus)
    return BusCheckpoints(bus)
