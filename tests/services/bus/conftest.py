"""The `bus` of these tests is each implementation in turn: the contract is the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.bus import Bus, EmbeddedBus, KafkaBus


@pytest.fixture(params=["embedded", "kafka"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """A started bus, closed after the test: an embedded bus on a fresh SQLite file, or a
    Kafka bus on the session's broker in a namespace of its own."""
    instance: Bus
    if request.param == "embedded":
        instance = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=4, poll_interval_s=0.05)
    else:
        broker = request.getfixturevalue("kafka_broker")
        instance = KafkaBus(broker.bootstrap, partitions=4, namespace=f"{uuid.uuid4().hex}.")
    await instance.start()
    yield instance
    await instance.close()
