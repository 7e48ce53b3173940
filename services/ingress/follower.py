"""Keeps a `Directory` folded from the bus, and lets a request wait until its own writes
(or any change) are visible: read-your-writes across processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from events import EventDecodeError, topics
from services.bus import Bus, Record, decode_record
from services.ingress.directory import Directory

log = logging.getLogger(__name__)
FOLLOWED_TOPICS = (topics.WORKSPACES, topics.NODES)


class DirectoryFollower:
    """Consumes the workspace and node topics from the beginning into `directory`."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.directory = Directory()
        self._positions: dict[tuple[str, int], int] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Fold everything already in the log, then keep following in the background."""
        self._consumer = self.bus.consumer(FOLLOWED_TOPICS, group=None, start="earliest")
        await self._consumer.start()
        while await self._step(timeout_s=0.01):
            pass
        self._task = asyncio.create_task(self._run(), name="directory-follower")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._step(timeout_s=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following; a bad batch must not stop the control plane
                log.exception("directory follower failed; retrying")
                await asyncio.sleep(1.0)

    async def _step(self, timeout_s: float) -> bool:
        records = await self._consumer.fetch(1000, timeout_s=timeout_s)
        for record in records:
            try:
                self.directory.apply(decode_record(record))
            except EventDecodeError:
                log.warning("skipping undecodable record %s/%d@%d",
                            record.topic, record.partition, record.offset)  # fmt: skip
            self._positions[(record.topic, record.partition)] = record.offset + 1
        if records:
            async with self._changed:
                self._changed.notify_all()
        return bool(records)

    def has_seen(self, records: Sequence[Record]) -> bool:
        return all(
            self._positions.get((r.topic, r.partition), 0) > r.offset
            for r in records
            if r.topic in FOLLOWED_TOPICS
        )

    async def wait_for(self, records: Sequence[Record], timeout_s: float = 10.0) -> None:
        """Return once every record (as returned by publish) is folded into the directory."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.has_seen(records))

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return after the next batch is folded, or after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait()
