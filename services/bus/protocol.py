"""The Bus contract every implementation (embedded SQLite log, Kafka) keeps.

- `publish`/`publish_many` return only once every record is durable; records with the
  same key land in the same partition, in publish order.
- A consumer in a named group receives each record of its partitions at least once;
  `commit()` stores the position after everything it has returned so far, and a new
  member of the group resumes from there. Without a group, nothing is committed.
- `ends` says where partitions end as of the call: a reader has caught up with a
  partition once it has been handed every record below its end. That is how a caller
  learns what a partition already holds before acting on any of it; `positions` says
  where the consumer is in each partition it holds.
- `replay` reads every record of the topics from the beginning, in each partition's order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, Self

StartAt = Literal["earliest", "latest"]
"""Where a consumer without a committed position begins."""


@dataclass(frozen=True, slots=True)
class Record:
    """One stored record. `offset` is its position within (`topic`, `partition`)."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to publish."""

    topic: str
    key: str
    value: bytes


class Consumer(Protocol):
    """A subscription to some topics, alone or as one member of a consumer group.
    `start()` (or entering the context) joins the group; `fetch` starts it if needed."""

    async def start(self) -> None:
        """Join the group and take a share of its partitions."""
        ...

    async def fetch(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Up to `max_records` next records; waits up to `timeout_s` when there are none
        (waking as soon as one is published) and then returns an empty list."""
        ...

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Durably store the position after every record fetched so far, or, with
        `offsets`, the given next offsets of (topic, partition) pairs this consumer holds
        (for consumers that finish records out of order)."""
        ...

    async def ends(
        self, partitions: Collection[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], int]:
        """The end of each of `partitions` (of this consumer's topics; by default those
        it holds now) as of the call: the offset its next record will get (0 when it has
        none yet). Every record published before the call is below it."""
        ...

    async def positions(self) -> dict[tuple[str, int], int]:
        """The next offset this consumer will hand out of each partition it holds now
        (in a group, before it has fetched from a partition: where the group resumes it).
        With `ends`, how far behind it is: caught up with a partition once its position
        reached the end."""
        ...

    async def close(self) -> None:
        """Leave the group; uncommitted records will be delivered again to the group."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Bus(Protocol):
    """A durable, partitioned, keyed log of records."""

    async def start(self) -> None:
        """Open the bus; must be called before anything else."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release resources."""
        ...

    async def publish(self, topic: str, key: str, value: bytes) -> Record:
        """Append one record; returns once it is durable."""
        ...

    async def publish_many(self, records: Sequence[Outgoing]) -> list[Record]:
        """Append several records; returns once all are durable, in the given order."""
        ...

    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        start: StartAt = "earliest",
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> Consumer:
        """A consumer of `topics`, a member of `group` when one is named. Without a group,
        `positions` names the next offset to read of some partitions (where a checkpoint
        left off); the others begin at `start`. An offset no longer held (retention)
        begins at the partition's first record."""
        ...

    def replay(self, topics: Sequence[str]) -> AsyncIterator[Record]:
        """Every record of `topics` from the beginning up to now."""
        ...
