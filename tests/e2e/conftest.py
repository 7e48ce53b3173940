"""The end-to-end suite runs twice: on the embedded log and on a real Kafka broker (with
the scheduler and two dispatchers in processes of their own). A cluster of real
processes per test, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, cluster_env


@pytest.fixture(scope="session", params=["embedded", "kafka"])
def kafka_bootstrap(request: pytest.FixtureRequest) -> str | None:
    """None on the embedded log, else the bootstrap address of the session's broker."""
    if request.param == "embedded":
        return None
    return str(request.getfixturevalue("kafka_broker").bootstrap)


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str | None) -> Iterator[Cluster]:
    instance = Cluster(tmp_path, cluster_env(kafka_bootstrap))
    instance.start_control_plane()
    try:
        yield instance
    finally:
        instance.stop()
