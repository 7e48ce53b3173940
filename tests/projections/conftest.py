"""A fresh database per test inside the test process's one chdb engine (`ch_client`, in
`tests/conftest.py`: chdb allows one engine path per process)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from projections import ProjectionWriter, create_schema

from .builders import drop_database


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
