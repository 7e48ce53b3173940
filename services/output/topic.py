"""The output topic on Kafka: `TopicSink` publishes chunks there from a dispatcher process,
`OutputFollower` reads them in an ingress process (from the topic's end as of its start,
without a group) and hands each to a callback (the ingress's hub)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from services.bus import Bus, BusError, Consumer, Outgoing
from services.bus.topology import OUTPUT
from services.output.chunks import ChunkDecodeError, OutputChunk, decode_chunk, encode_chunk

log = logging.getLogger(__name__)
MAX_PENDING_BYTES = 64 << 20
"""Chunks waiting for the broker beyond this are dropped (their readers see a gap and
fall back on the recorded body): a broker away must not grow a dispatcher's memory."""
_BATCH = 256


class TopicSink:
    """An `OutputSink` publishing on the output topic, keyed by task id, in emit order
    (one publish at a time, batching what arrived meanwhile): the dispatcher's read of
    the container never waits for the broker. `start()` before, `close()` after."""

    def __init__(self, bus: Bus, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.bus = bus
        self.max_pending_bytes = max_pending_bytes
        self._pending: deque[OutputChunk] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="output-sink")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def emit(self, chunk: OutputChunk) -> None:
        if self._pending_bytes + len(chunk.data) > self.max_pending_bytes:
            return
        self._pending.append(chunk)
        self._pending_bytes += len(chunk.data)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(_BATCH, len(self._pending)))]
                self._pending_bytes -= sum(len(chunk.data) for chunk in batch)
                records = [Outgoing(OUTPUT, c.task_id, encode_chunk(c)) for c in batch]
                try:
                    await self.bus.publish_many(records)
                except BusError as exc:  # best effort: the end carries the whole body
                    log.debug("dropping %d output chunks: %s", len(batch), exc)


class OutputFollower:
    """Reads the output topic from its end as of `start()`, handing every chunk to
    `deliver` (records that are not chunks are skipped); `close()` stops it."""

    def __init__(self, bus: Bus, deliver: Callable[[OutputChunk], None]) -> None:
        self.bus = bus
        self.deliver = deliver
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = self.bus.consumer([OUTPUT], group=None, start="latest")
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(self._consumer), name="output-follower")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.close()

    async def _run(self, consumer: Consumer) -> None:
        while True:
            try:
                for record in await consumer.fetch(1000, timeout_s=1.0):
                    try:
                        self.deliver(decode_chunk(record.value))
                    except ChunkDecodeError:
                        log.warning("skipping a record of %s that is not a chunk", OUTPUT)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("output follower failed; retrying")
                await asyncio.sleep(1.0)
