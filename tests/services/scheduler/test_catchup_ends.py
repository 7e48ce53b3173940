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
