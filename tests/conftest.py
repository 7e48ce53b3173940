"""Shared fixtures: real buses in temporary directories, one real Kafka broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from projections import connect
from services.bus import EmbeddedBus
from tests.support.kafka import KafkaBroker

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    """A started embedded bus on a fresh SQLite file, closed after the test."""
    instance = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=4, poll_interval_s=0.05)
    await instance.start()
    yield instance
    await instance.close()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One real Kafka broker for the whole test session (started on first use)."""
    broker = KafkaBroker.start_in(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def ch_client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    """The session's client on its one in-process chdb engine (chdb allows one engine
    path per process: every test of the process that needs one shares it)."""
    path: Path = tmp_path_factory.mktemp("clickhouse")
    return connect(f"chdb://{path}")
