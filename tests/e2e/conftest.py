"""A cluster of real processes per test, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, cluster_env


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    instance = Cluster(tmp_path, cluster_env())
    instance.start_control_plane()
    try:
        yield instance
    finally:
        instance.stop()
