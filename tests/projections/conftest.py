"""One chdb engine for the whole test process (chdb allows one engine path per process),
and a fresh database per test inside it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from projections import ProjectionWriter, connect, create_schema

from .builders import drop_database


@pytest.fixture(scope="session")
def ch_client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    """The session's client on its one in-process engine."""
    path: Path = tmp_path_factory.mktemp("clickhouse")
    return connect(f"chdb://{path}")


@pytest.fixture
def database(ch_client: Client) -> Iterator[str]:
    """A fresh database holding the projection tables, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_schema(ch_client, name)
    yield name
    drop_database(ch_client, name)


@pytest.fixture
def writer(ch_client: Client, database: str) -> ProjectionWriter:
    return ProjectionWriter(ch_client, database)
