"""`CatchUpConsumer.ends`: the `Consumer` contract over its two parts."""

from __future__ import annotations

from events import topics
from services.bus import EmbeddedBus, Outgoing
from services.scheduler.distributed import CatchUpConsumer


async def test_ends_cover_both_parts_and_route_each_partition_to_its_own(
    bus: EmbeddedBus,
) -> None:
    stored = await bus.publish_many(
        [Outgoing(topics.NODES, f"n{i}", b"x") for i in range(5)]
        + [Outgoing(topics.TASKS, f"t{i}", b"x") for i in range(9)]
    )
    written: dict[tuple[str, int], int] = {}
    for record in stored:
        written[(record.topic, record.partition)] = record.offset + 1
    async with CatchUpConsumer(bus, [topics.TASKS, topics.NODES]) as consumer:
        ends = await consumer.ends()
        assert set(ends) == {(t, p) for t in (topics.NODES, topics.TASKS) for p in range(4)}
        assert ends == {where: written.get(where, 0) for where in ends}
        one = (topics.TASKS, stored[-1].partition)
        assert await consumer.ends([one]) == {one: written[one]}


async def test_partitions_a_checkpoint_covers_to_their_end_are_not_waited_for(
    bus: EmbeddedBus,
) -> None:
    """A new leader resuming from a checkpoint that covers the whole log is caught up at
    once: it used to wait on every partition until a fetch came back empty, and with
    traffic on any partition none did (a takeover on Kafka made no decision for minutes)."""
    stored = await bus.publish_many(
        [Outgoing(topics.NODES, f"n{i}", b"x") for i in range(5)]
        + [Outgoing(topics.TASKS, f"t{i}", b"x") for i in range(9)]
    )
    covered: dict[tuple[str, int], int] = {}
    for record in stored:
        covered[(record.topic, record.partition)] = record.offset + 1
    consumer = CatchUpConsumer(bus, [topics.TASKS, topics.NODES], positions=covered)
    async with consumer:
        await consumer.start()
        assert consumer.caught_up
        later = await bus.publish(topics.TASKS, "t-new", b"y")
        batch = await consumer.fetch(max_records=1000, timeout_s=5)
        assert [(r.topic, r.offset) for r in batch] == [(later.topic, later.offset)]
