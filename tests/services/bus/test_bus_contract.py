"""The Bus contract, exercised on a real bus (the fixture decides which)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from services.bus import Bus, BusError, Outgoing, Record


def _batch(n: int, keys: int = 7, topic: str = "t") -> list[Outgoing]:
    return [Outgoing(topic, f"k{i % keys}", f"{i % keys}:{i // keys}".encode()) for i in range(n)]


async def _drain(consumer, until: int, timeout_s: float = 10.0) -> list[Record]:  # type: ignore[no-untyped-def]
    got: list[Record] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < until and asyncio.get_running_loop().time() < deadline:
        got += await consumer.fetch(1000, timeout_s=0.2)
    return got


async def test_publish_keeps_order_per_key_and_one_partition_per_key(bus: Bus) -> None:
    stored = await bus.publish_many(_batch(200))
    stored.append(await bus.publish("t", "k0", b"0:last"))
    by_key: dict[str, list[Record]] = defaultdict(list)
    for record in stored:
        by_key[record.key].append(record)
    for records in by_key.values():
        assert len({r.partition for r in records}) == 1
        assert [r.offset for r in records] == sorted(r.offset for r in records)
    replayed = [r async for r in bus.replay(["t"])]
    assert len(replayed) == 201
    for key, records in by_key.items():
        assert [r.value for r in replayed if r.key == key] == [r.value for r in records]


async def test_offsets_are_dense_per_partition(bus: Bus) -> None:
    stored = await bus.publish_many(_batch(100))
    per_partition: dict[int, list[int]] = defaultdict(list)
    for record in stored:
        per_partition[record.partition].append(record.offset)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))


async def test_group_consumer_resumes_from_its_commit(bus: Bus) -> None:
    await bus.publish_many(_batch(50))
    async with bus.consumer(["t"], group="g") as first:
        got = await _drain(first, 50)
        assert len(got) == 50
        await first.commit()
    await bus.publish_many(_batch(10, topic="t"))
    async with bus.consumer(["t"], group="g") as second:
        rest = await _drain(second, 10)
        assert len(rest) == 10
        assert await second.fetch(100, timeout_s=0.1) == []


async def test_uncommitted_records_are_delivered_again(bus: Bus) -> None:
    await bus.publish_many(_batch(30))
    async with bus.consumer(["t"], group="g") as first:
        assert len(await _drain(first, 30)) == 30
    async with bus.consumer(["t"], group="g") as second:
        assert len(await _drain(second, 30)) == 30


async def test_groups_are_independent(bus: Bus) -> None:
    await bus.publish_many(_batch(20))
    async with bus.consumer(["t"], group="a") as a, bus.consumer(["t"], group="b") as b:
        assert len(await _drain(a, 20)) == 20
        await a.commit()
        assert len(await _drain(b, 20)) == 20


async def test_members_of_a_group_split_the_partitions_and_see_everything(bus: Bus) -> None:
    await bus.publish_many(_batch(400, keys=40))
    one, two = bus.consumer(["t"], group="g"), bus.consumer(["t"], group="g")
    await one.start()
    await two.start()
    got_one, got_two = await asyncio.gather(_drain(one, 400, 1.5), _drain(two, 400, 1.5))
    assert got_one and got_two
    assert not {r.key for r in got_one} & {r.key for r in got_two}
    assert sorted((r.partition, r.offset) for r in got_one + got_two) == sorted(
        [(r.partition, r.offset) async for r in bus.replay(["t"])]
    )
    await one.commit()
    await two.commit()
    await one.close()
    await bus.publish_many(_batch(40, keys=40))
    assert len(await _drain(two, 40)) == 40
    await two.close()


async def test_start_latest_skips_history_and_earliest_reads_it(bus: Bus) -> None:
    await bus.publish_many(_batch(10))
    async with bus.consumer(["t"], start="latest") as latest, bus.consumer(["t"]) as earliest:
        assert await latest.fetch(100, timeout_s=0.1) == []
        assert len(await _drain(earliest, 10)) == 10
        await bus.publish("t", "new", b"x")
        assert [r.value for r in await _drain(latest, 1)] == [b"x"]


async def test_consumer_wakes_on_publish(bus: Bus) -> None:
    async with bus.consumer(["t"], start="latest") as consumer:
        await consumer.fetch(10, timeout_s=0.05)
        waiting = asyncio.create_task(consumer.fetch(10, timeout_s=30))
        await asyncio.sleep(0.1)
        await bus.publish("t", "k", b"hello")
        got = await asyncio.wait_for(waiting, timeout=10)
        assert [r.value for r in got] == [b"hello"]


async def test_consumer_reads_only_its_topics(bus: Bus) -> None:
    await bus.publish_many(_batch(5, topic="a") + _batch(7, topic="b"))
    async with bus.consumer(["b"]) as consumer:
        got = await _drain(consumer, 7)
        assert {r.topic for r in got} == {"b"} and len(got) == 7


async def test_a_consumer_without_group_cannot_commit(bus: Bus) -> None:
    async with bus.consumer(["t"]) as consumer:
        with pytest.raises(BusError):
            await consumer.commit()


async def test_publish_many_of_nothing_is_nothing(bus: Bus) -> None:
    assert await bus.publish_many([]) == []


async def test_explicit_offsets_commit_only_what_was_finished(bus: Bus) -> None:
    stored = await bus.publish_many([Outgoing("t", "one-key", str(i).encode()) for i in range(10)])
    partition = stored[0].partition
    async with bus.consumer(["t"], group="g") as first:
        assert len(await _drain(first, 10)) == 10
        await first.commit({("t", partition): 4})
    async with bus.consumer(["t"], group="g") as second:
        again = await _drain(second, 6)
        assert [r.offset for r in again] == [4, 5, 6, 7, 8, 9]


async def test_ends_are_where_each_held_partition_will_write_next(bus: Bus) -> None:
    stored = await bus.publish_many(_batch(60, keys=13))
    written: dict[tuple[str, int], int] = defaultdict(int)
    for record in stored:
        written[(record.topic, record.partition)] += 1
    async with bus.consumer(["t"], group="g") as consumer:
        ends = await consumer.ends()
        assert set(ends) == {("t", p) for p in range(4)}  # the only member holds them all
        assert ends == {where: written.get(where, 0) for where in ends}
        more = await bus.publish("t", "k0", b"one more")
        where = (more.topic, more.partition)
        assert await consumer.ends([where]) == {where: more.offset + 1}


async def test_reading_up_to_the_ends_is_reading_everything_published_before(bus: Bus) -> None:
    published = {r.value for r in await bus.publish_many(_batch(300, keys=17))}
    async with bus.consumer(["t"], group="g") as consumer:
        behind = {where: end for where, end in (await consumer.ends()).items() if end}
        got: list[Record] = []
        async with asyncio.timeout(30):
            while behind:
                for record in await consumer.fetch(50, timeout_s=0.2):
                    got.append(record)
                    if record.offset + 1 >= behind.get((record.topic, record.partition), 0):
                        behind.pop((record.topic, record.partition), None)
        assert {r.value for r in got} == published


async def test_ends_of_partitions_another_member_holds_are_told_too(bus: Bus) -> None:
    stored = await bus.publish_many(_batch(40, keys=11))
    last = {(r.topic, r.partition): r.offset + 1 for r in stored}
    one, two = bus.consumer(["t"], group="g"), bus.consumer(["t"], group="g")
    await one.start()
    await two.start()
    try:
        async with asyncio.timeout(30):  # Kafka: until the group settled on both members
            while True:
                held = [set(await one.ends()), set(await two.ends())]
                if all(held) and len(held[0] | held[1]) == 4:
                    break
                await asyncio.sleep(0.1)
        assert not held[0] & held[1]
        everything = await one.ends([("t", p) for p in range(4)])
        assert everything == {("t", p): last.get(("t", p), 0) for p in range(4)}
    finally:
        await one.close()
        await two.close()


async def test_ends_are_only_of_the_consumers_topics(bus: Bus) -> None:
    await bus.publish_many(_batch(3, topic="a") + _batch(3, topic="b"))
    async with bus.consumer(["a"]) as consumer:
        assert set(await consumer.ends()) == {("a", p) for p in range(4)}
        with pytest.raises(BusError):
            await consumer.ends([("b", 0)])


async def test_a_consumer_without_a_group_begins_where_it_is_told(bus: Bus) -> None:
    records = await bus.publish_many(_batch(40))
    ends: dict[tuple[str, int], int] = {}
    for record in records:
        ends[(record.topic, record.partition)] = record.offset + 1
    # Resume two partitions halfway (as from a checkpoint); the rest from the start.
    resumed = dict(sorted(ends.items())[:2])
    positions = {p: end // 2 for p, end in resumed.items()}
    expected = [r for r in records if r.offset >= positions.get((r.topic, r.partition), 0)]
    async with bus.consumer(["t"], group=None, start="earliest", positions=positions) as c:
        got = await _drain(c, len(expected))
    assert sorted((r.topic, r.partition, r.offset) for r in got) == sorted(
        (r.topic, r.partition, r.offset) for r in expected
    )


async def test_positions_are_where_the_consumer_hands_out_next(bus: Bus) -> None:
    stored = await bus.publish_many(_batch(60, keys=13))
    ends = {(r.topic, r.partition): r.offset + 1 for r in stored}
    async with bus.consumer(["t"], group="g") as consumer:
        assert await consumer.positions() == {("t", p): 0 for p in range(4)}
        assert len(await _drain(consumer, 60)) == 60
        assert await consumer.positions() == await consumer.ends()
        await consumer.commit()
    later = await bus.publish("t", "k0", b"one more")
    async with bus.consumer(["t"], group="g") as resumed:  # from the group's commit
        assert await resumed.positions() == {("t", p): ends.get(("t", p), 0) for p in range(4)}
        assert [r.value for r in await _drain(resumed, 1)] == [later.value]
        assert (await resumed.positions())[(later.topic, later.partition)] == later.offset + 1
    where = (later.topic, later.partition)
    async with bus.consumer(["t"], positions={where: 2}) as told:
        assert (await told.positions())[where] == 2
