"""Catching up before the first decision of a term, in an order the fold can take.

`SchedulerRunner` decides as soon as a fetch returns less than a full batch, taking that
to mean it has read the whole log. A Kafka consumer also returns short batches while it is
still far behind (whatever the last fetch response held), so a new leader could decide on
half a log: dispatch a task whose `TaskDispatched` it has not read yet, or fill a slot
whose dispatch sits in a partition it has not reached.

Order matters too: `ClusterState` counts a dispatch against its replica's slots only if
the replica is already known when the dispatch is folded, and Kafka interleaves topics
freely (a replay on the Kafka bus returned the whole tasks topic before the nodes topic,
and the fold ended with the replica's in-flight tasks uncounted: a new leader then fills
slots that are taken). So the catch-up delivers the workspaces and nodes topics first,
then the rest.

`CatchUpConsumer` hands out only full batches until it has delivered every record that
was in the log when it started, which includes every decision of the previous leader (it
stepped down before this term began).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Self

from aiokafka import TopicPartition

from events import topics as event_topics
from services.bus import Bus, Record
from services.bus.kafka import KafkaBus

Position = tuple[str, int]
"""(logical topic, partition)."""

FIRST = (event_topics.WORKSPACES, event_topics.NODES)
"""Topics replayed before the others: what task events refer to."""


async def log_ends(bus: Bus, topics: Sequence[str]) -> dict[Position, int]:
    """The offset just after the last record of each non-empty partition of `topics`, as
    of now. On Kafka it asks the broker; on any other bus it reads the log through."""
    if isinstance(bus, KafkaBus):
        return await _kafka_ends(bus, topics)
    ends: dict[Position, int] = {}
    async for record in bus.replay(topics):
        ends[(record.topic, record.partition)] = record.offset + 1
    return ends


async def _kafka_ends(bus: KafkaBus, topics: Sequence[str]) -> dict[Position, int]:
    logical = {bus.broker_topic(topic): topic for topic in topics}
    counts = await bus.ensure_topics(topics)
    everything = [TopicPartition(name, p) for name, count in counts.items() for p in range(count)]
    reader = bus.aiokafka_consumer(None, "earliest")
    await reader.start()
    try:
        ends: dict[Any, int] = await reader.end_offsets(everything)
    finally:
        await reader.stop()
    return {(logical[tp.topic], tp.partition): end for tp, end in ends.items() if end > 0}


class CatchUpConsumer:
    """A `Consumer` of every record of `topics` from the earliest, or from `positions`
    where given (no group). Until it has
    delivered everything before `log_ends` (taken at `start()`), its batches are full
    (`max_records` long) and the `FIRST` topics come before the others; after that it
    delivers whatever arrives on any of them."""

    def __init__(
        self,
        bus: Bus,
        topics: Sequence[str],
        positions: Mapping[Position, int] | None = None,
    ) -> None:
        self.bus = bus
        self.topics = tuple(topics)
        first = [t for t in self.topics if t in FIRST]
        rest = [t for t in self.topics if t not in FIRST]
        given = dict(positions or {})
        self._parts = [
            (
                tuple(part),
                bus.consumer(part, positions={p: o for p, o in given.items() if p[0] in part}),
            )
            for part in (first, rest)
            if part
        ]
        self._behind: list[dict[Position, int]] | None = None  # per part: ends to reach
        self._pending: dict[int, asyncio.Future[list[Record]]] = {}

    @property
    def caught_up(self) -> bool:
        return self._behind is not None and not any(self._behind)

    async def start(self) -> None:
        if self._behind is None:
            ends = await log_ends(self.bus, self.topics)
            self._behind = [
                {position: end for position, end in ends.items() if position[0] in part}
                for part, _ in self._parts
            ]
        for (_, consumer), behind in zip(self._parts, self._behind, strict=True):
            await consumer.start()
            # A partition a checkpoint already covers to its end delivers nothing: waiting
            # for it would hold back every decision until some fetch came back empty, which
            # steady traffic on another partition never lets happen.
            at = await consumer.positions()
            for position in [p for p, end in behind.items() if at.get(p, 0) >= end]:
                del behind[position]

    async def fetch(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        await self.start()
        assert self._behind is not None
        batch: list[Record] = []
        for (_, consumer), behind in zip(self._parts, self._behind, strict=True):
            while behind and len(batch) < max_records:
                more = await consumer.fetch(max_records - len(batch), timeout_s)
                _advance(behind, more)
                batch += more
                if not more:  # records below an end may be gone (retention): ask where it is
                    at = await consumer.positions()
                    for position in [p for p, end in behind.items() if at.get(p, 0) >= end]:
                        del behind[position]
            if behind:
                return batch  # full, and this part still behind: later parts must wait
        if batch:
            return batch
        return await self._fetch_any(max_records, timeout_s)

    async def _fetch_any(self, max_records: int, timeout_s: float) -> list[Record]:
        """The records of whichever part has some first. A fetch still waiting is kept
        for the next call, not cancelled."""
        for index, (_, consumer) in enumerate(self._parts):
            if index not in self._pending:
                fetch = asyncio.ensure_future(consumer.fetch(max_records, timeout_s))
                self._pending[index] = fetch
        await asyncio.wait(self._pending.values(), return_when=asyncio.FIRST_COMPLETED)
        batch: list[Record] = []
        for index in [i for i, fetch in self._pending.items() if fetch.done()]:
            batch += self._pending.pop(index).result()
        return batch

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        for _, consumer in self._parts:
            await consumer.commit(offsets)

    async def ends(self, partitions: Collection[Position] | None = None) -> dict[Position, int]:
        ends: dict[Position, int] = {}
        for part, consumer in self._parts:
            mine = None if partitions is None else [p for p in partitions if p[0] in part]
            if mine is None or mine:
                ends.update(await consumer.ends(mine))
        return ends

    async def positions(self) -> dict[Position, int]:
        positions: dict[Position, int] = {}
        for _, consumer in self._parts:
            positions.update(await consumer.positions())
        return positions

    async def close(self) -> None:
        pending, self._pending = list(self._pending.values()), {}
        for fetch in pending:
            fetch.cancel()
        for fetch in pending:
            with contextlib.suppress(BaseException):
                await fetch
        for _, consumer in self._parts:
            await consumer.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _advance(behind: dict[Position, int], records: list[Record]) -> None:
    """Forget the partitions whose end `records` reached."""
    for record in records:
        position = (record.topic, record.partition)
        end = behind.get(position)
        if end is not None and record.offset + 1 >= end:
            del behind[position]
