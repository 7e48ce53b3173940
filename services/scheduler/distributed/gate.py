"""Publishing only while leading: `LeaderGate`, and `TermBus`, the bus a term's runner
sees.

The gate is opened when this process is assigned the group's leader partition and closed
at the start of a revocation, before the group can hand leadership to another member. A
publish that starts while the gate is closed raises `NotLeaderError` and writes nothing;
a publish already under way is shielded from cancellation and can be waited for with
`drain()`, so that a term ends only once its last batch is durable (or has failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from services.bus import Bus, Consumer, Outgoing, Record, StartAt
from services.scheduler.distributed.catchup import CatchUpConsumer
from services.scheduler.distributed.errors import NotLeaderError

T = TypeVar("T")


class LeaderGate:
    """Open while this process may publish decisions; created closed."""

    def __init__(self) -> None:
        self._open = False
        self._in_flight: set[asyncio.Future[Any]] = set()

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        """Refuse every publish from now on (in-flight ones carry on: see `drain`)."""
        self._open = False

    async def through(self, publish: Awaitable[T]) -> T:
        """Await `publish` if the gate is open, else raise `NotLeaderError` without
        starting it. Cancelling the caller does not cancel the publish itself."""
        if not self._open:
            if asyncio.iscoroutine(publish):
                publish.close()  # never started: nothing to wait for
            raise NotLeaderError("not the scheduler leader: decision not published")
        future = asyncio.ensure_future(publish)
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
        return await asyncio.shield(future)

    async def drain(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for publishes already under way; True when none is left."""
        pending = set(self._in_flight)
        if not pending:
            return True
        _, still = await asyncio.wait(pending, timeout=timeout_s)
        return not still


class TermBus:
    """A `Bus` over `inner` whose publishes go through `gate`, and whose consumers that
    read everything (no group, from the earliest record) are `CatchUpConsumer`s. The rest
    is passed through; `start`/`close` do nothing: `inner` belongs to the caller.
    `published` counts the records its publishes stored, including those that completed
    after their caller was cancelled."""

    def __init__(self, inner: Bus, gate: LeaderGate) -> None:
        self.inner = inner
        self.gate = gate
        self.published = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, topic: str, key: str, value: bytes) -> Record:
        (record,) = await self.publish_many([Outgoing(topic, key, value)])
        return record

    async def publish_many(self, records: Sequence[Outgoing]) -> list[Record]:
        return await self.gate.through(self._counted(records))

    async def _counted(self, records: Sequence[Outgoing]) -> list[Record]:
        stored = await self.inner.publish_many(records)
        self.published += len(stored)
        return stored

    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        start: StartAt = "earliest",
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> Consumer:
        if group is None and start == "earliest":
            return CatchUpConsumer(self.inner, topics, positions)
        return self.inner.consumer(topics, group, start, positions)

    def replay(self, topics: Sequence[str]) -> AsyncIterator[Record]:
        return self.inner.replay(topics)
