"""The dispatcher role: consume `TaskDispatched` (group `dispatcher`), call the node
container, publish `TaskCompleted` or `TaskFailed`. Calls run concurrently; offsets are
committed only below the oldest call still running, so a crash repeats unfinished calls
(the container sees the same `X-NGPU-Task-ID` and `X-NGPU-Attempt` again)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict

import aiohttp

from events import EventDecodeError, TaskDispatched, is_terminal, topics
from services.bus import Bus, BusError, Consumer, Record, decode_record, publish_events
from services.dispatcher.call import CallPolicy, call_node
from services.dispatcher.offsets import OffsetTracker

log = logging.getLogger(__name__)
GROUP = "dispatcher"
_ENDED_MEMORY = 100_000
_COMMIT_EVERY_S = 0.25


class Dispatcher:
    """Runs until cancelled. `max_concurrency` bounds calls in flight (and the pool)."""

    def __init__(
        self,
        bus: Bus,
        policy: CallPolicy | None = None,
        *,
        max_concurrency: int = 256,
    ) -> None:
        self.bus = bus
        self.policy = policy or CallPolicy()
        self.max_concurrency = max_concurrency
        self.tracker = OffsetTracker()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._calls: set[asyncio.Task[None]] = set()
        # Tasks whose outcome is already in the log: a redelivered dispatch is not re-run.
        self._ended: OrderedDict[str, None] = OrderedDict()
        # (task, attempt) pairs this process has called: a second `TaskDispatched` for the
        # same attempt (a stale scheduler leader's, or a redelivery) is not called again.
        self._started: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.session: aiohttp.ClientSession  # opened by run(), inside the event loop

    async def run(self) -> None:
        consumer = self.bus.consumer([topics.TASKS], group=GROUP, start="earliest")
        last_commit = 0.0
        # aiohttp, not httpx: httpx's pool checks every pooled connection on each request
        # (a syscall each), which took most of a dispatcher's CPU with 64 open connections.
        connector = aiohttp.TCPConnector(limit=self.max_concurrency, limit_per_host=0)
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False)
        try:
            async with consumer:
                committing: asyncio.Task[None] | None = None
                try:
                    while True:
                        records = await consumer.fetch(500, timeout_s=_COMMIT_EVERY_S)
                        for record in records:
                            await self._take(record)
                        # Offsets are a durable write that competes with the task events
                        # for the log: commit a few times a second, not after every record
                        # (a crash repeats at most that much, which at-least-once allows),
                        # and in the background: a commit is a round trip to the broker,
                        # and dispatches arriving meanwhile must not wait for it.
                        idle = committing is None or committing.done()
                        if idle and time.monotonic() - last_commit >= _COMMIT_EVERY_S:
                            last_commit = time.monotonic()
                            offsets = self.tracker.committable()
                            committing = asyncio.create_task(_commit(consumer, offsets))
                finally:
                    if committing is not None:
                        committing.cancel()
                        await asyncio.gather(committing, return_exceptions=True)
        finally:
            for call in list(self._calls):
                call.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)
            await self.session.close()

    async def _take(self, record: Record) -> None:
        self.tracker.started(record.topic, record.partition, record.offset)
        try:
            event = decode_record(record).event
        except EventDecodeError:
            log.warning("skipping undecodable record %s@%d", record.topic, record.offset)
            event = None
        if event is not None and is_terminal(event):
            self._remember_end(getattr(event, "task_id", ""))
        if (
            not isinstance(event, TaskDispatched)
            or event.task_id in self._ended
            or not _first_time(self._started, (event.task_id, event.attempt))
        ):
            self.tracker.finished(record.topic, record.partition, record.offset)
            return
        await self._slots.acquire()
        call = asyncio.create_task(self._dispatch(event, record))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    async def _dispatch(self, dispatch: TaskDispatched, record: Record) -> None:
        try:
            outcome = await call_node(self.session, dispatch, self.policy)
            while True:
                try:
                    await publish_events(self.bus, [outcome])
                    break
                except BusError as exc:  # keep the outcome until the bus takes it
                    log.warning("publishing %s failed, retrying: %s", dispatch.task_id, exc)
                    await asyncio.sleep(1.0)
            self.tracker.finished(record.topic, record.partition, record.offset)
        finally:
            self._slots.release()

    def _remember_end(self, task_id: str) -> None:
        self._ended[task_id] = None
        if len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)


async def _commit(consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
    """Store `offsets`; a refusal (a rebalance, the bus away) is left to the next commit."""
    with contextlib.suppress(BusError):
        await consumer.commit(offsets)


def _first_time(seen: OrderedDict[tuple[str, int], None], key: tuple[str, int]) -> bool:
    """Record `key` in `seen` (the oldest forgotten past `_ENDED_MEMORY`); whether it was new."""
    if key in seen:
        return False
    seen[key] = None
    if len(seen) > _ENDED_MEMORY:
        seen.popitem(last=False)
    return True
