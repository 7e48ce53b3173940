"""What only the Kafka bus promises: surviving a broker restart without losing an
acknowledged record, topics created with their topology, namespaces that keep apart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events import topics
from services.bus import BusError, Consumer, KafkaBus, Outgoing, Record
from services.bus.topology import spec_for
from tests.support.kafka import KafkaBroker

HANG_GUARD_S = 120


def _namespace() -> str:
    return f"{uuid.uuid4().hex}."


async def _receive(consumer: Consumer, wanted: set[bytes]) -> list[Record]:
    """Fetch until every value of `wanted` arrived (a hang guard bounds the wait)."""
    got: list[Record] = []
    async with asyncio.timeout(HANG_GUARD_S):
        while not wanted <= {r.value for r in got}:
            got += await consumer.fetch(1000, timeout_s=0.5)
    return got


@pytest.fixture
async def bus(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaBus]:
    async with KafkaBus(kafka_broker.bootstrap, partitions=4, namespace=_namespace()) as bus:
        yield bus


async def test_an_outage_fails_publishes_and_loses_no_acknowledged_record(
    kafka_broker: KafkaBroker,
) -> None:
    if kafka_broker.directory is None:
        pytest.skip("an external broker cannot be restarted")
    bus = KafkaBus(
        kafka_broker.bootstrap, partitions=4, namespace=_namespace(), publish_timeout_s=3
    )
    async with bus, bus.consumer(["t"], group="g") as consumer:
        before = [Outgoing("t", f"k{i}", f"before-{i}".encode()) for i in range(20)]
        acknowledged = {r.value for r in await bus.publish_many(before)}
        received = await _receive(consumer, acknowledged)
        try:
            await asyncio.to_thread(kafka_broker.stop)
            for attempt in range(2):  # on the producer in use, then on a fresh one
                with pytest.raises(BusError):
                    await asyncio.wait_for(
                        bus.publish("t", f"k{attempt}", f"during-{attempt}".encode()),
                        HANG_GUARD_S,
                    )
        finally:
            await asyncio.to_thread(kafka_broker.restart)
        after = [Outgoing("t", f"k{i}", f"after-{i}".encode()) for i in range(20)]
        acknowledged |= {r.value for r in await bus.publish_many(after)}
        received += await _receive(consumer, acknowledged - {r.value for r in received})
        received += await consumer.fetch(1000, timeout_s=0.5)
        assert {r.value for r in received} == acknowledged
        assert {r.value async for r in bus.replay(["t"])} == acknowledged


async def test_topics_are_created_with_their_topology(kafka_broker: KafkaBroker) -> None:
    names = [*topics.ALL_TOPICS, "t"]
    async with KafkaBus(kafka_broker.bootstrap, partitions=3, namespace=_namespace()) as bus:
        counts = await bus.ensure_topics(names)
        assert counts == {bus.broker_topic(name): 3 for name in names}
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
        await admin.start()
        try:
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, bus.broker_topic(n)) for n in names]
            )
        finally:
            await admin.close()
    for name, resource in zip(names, response.to_object()["resources"], strict=True):
        assert resource["resource_name"] == bus.broker_topic(name)
        actual = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        wanted = spec_for(name).configs(replication_factor=1)
        assert {key: actual[key] for key in wanted} == wanted


async def test_namespaces_do_not_see_each_other(kafka_broker: KafkaBroker) -> None:
    async with (
        KafkaBus(kafka_broker.bootstrap, namespace=_namespace()) as one,
        KafkaBus(kafka_broker.bootstrap, namespace=_namespace()) as two,
    ):
        await one.publish("t", "k", b"one")
        await two.publish("t", "k", b"two")
        assert [(r.topic, r.value) async for r in one.replay(["t"])] == [("t", b"one")]
        assert [(r.topic, r.value) async for r in two.replay(["t"])] == [("t", b"two")]
        async with one.consumer(["t"], group="g") as mine, two.consumer(["t"], group="g") as theirs:
            assert [r.value for r in await _receive(mine, {b"one"})] == [b"one"]
            assert [r.value for r in await _receive(theirs, {b"two"})] == [b"two"]


async def test_a_task_event_with_a_large_body_goes_through(bus: KafkaBus) -> None:
    value = b"x" * (12 << 20)  # an 8 MiB response, base64-encoded, with its envelope
    stored = await bus.publish(topics.TASKS, "task-1", value)
    assert [r async for r in bus.replay([topics.TASKS])] == [stored]
    async with bus.consumer([topics.TASKS]) as consumer:
        assert [r.value for r in await _receive(consumer, {value})] == [value]


async def test_a_record_too_large_for_its_topic_fails_its_call_alone(bus: KafkaBus) -> None:
    small = Outgoing(topics.NODES, "node-1", b"small")
    with pytest.raises(BusError, match="exceeds"):
        await bus.publish_many([small, Outgoing(topics.NODES, "node-1", b"x" * (2 << 20))])
    stored = await bus.publish_many([small])
    assert [r async for r in bus.replay([topics.NODES])] == stored


async def _topic_configs(bootstrap: str, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    (resource,) = response.to_object()["resources"]
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}


async def test_the_task_topic_takes_the_retention_of_the_bus_that_opens_it(
    kafka_broker: KafkaBroker,
) -> None:
    namespace = _namespace()
    async with KafkaBus(kafka_broker.bootstrap, namespace=namespace,
                        log_retention_ms=3_600_000) as first:  # fmt: skip
        await first.ensure_topics([topics.TASKS, topics.NODES])
        name = first.broker_topic(topics.TASKS)
        assert (await _topic_configs(kafka_broker.bootstrap, name))["retention.ms"] == "3600000"
    async with KafkaBus(kafka_broker.bootstrap, namespace=namespace,
                        log_retention_ms=7_200_000) as later:  # fmt: skip
        await later.ensure_topics([topics.TASKS])
        for _ in range(100):  # the brokers' metadata follows the controller within moments
            configs = await _topic_configs(kafka_broker.bootstrap, name)
            if configs["retention.ms"] != "3600000":
                break
            await asyncio.sleep(0.1)
        assert configs["retention.ms"] == "7200000"  # an existing topic is altered
        # ...and keeps the rest of its spec (AlterConfigs replaces the whole set).
        assert (
            configs["max.message.bytes"] == spec_for(topics.TASKS).configs(1)["max.message.bytes"]
        )
        nodes = await _topic_configs(kafka_broker.bootstrap, later.broker_topic(topics.NODES))
        assert nodes["retention.ms"] == "-1"  # configuration history is kept
