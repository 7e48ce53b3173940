"""DDL: idempotent creation, columns as declared, names checked, errors translated."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from events import NgpuError
from projections import (
    TABLES,
    InvalidName,
    ProjectionWriter,
    StoreError,
    create_schema,
    drop_schema,
    task_detail,
)
from projections.schema import EVENTS, TABLE_OF

from .builders import completed_history


def columns(client: Client, database: str, table: str) -> list[tuple[str, str]]:
    result = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String}"
        " AND table = {t:String} ORDER BY position",
        parameters={"db": database, "t": table},
    )
    return [(name, type_) for name, type_ in result.result_rows]


def test_tables_have_the_declared_columns_and_engine(ch_client: Client, database: str) -> None:
    for table in TABLES:
        assert columns(ch_client, database, table.name) == [
            (c, table.types[c]) for c in table.columns
        ]
        engine = ch_client.query(
            "SELECT engine FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": database, "t": table.name},
        ).result_rows
        assert engine == [("ReplacingMergeTree",)]


def test_create_schema_is_idempotent_and_keeps_rows(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    writer.write(completed_history("T1"))
    create_schema(ch_client, database)
    create_schema(ch_client, database)
    assert task_detail(ch_client, database, "T1") is not None


def test_drop_schema_then_create_gives_empty_tables(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    writer.write(completed_history("T1"))
    drop_schema(ch_client, database)
    assert columns(ch_client, database, "events") == []
    create_schema(ch_client, database)
    assert task_detail(ch_client, database, "T1") is None


def test_every_row_class_has_a_table() -> None:
    assert {table.row for table in TABLES} == set(TABLE_OF)
    assert len({table.name for table in TABLES}) == len(TABLES)


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a.b", "x; DROP DATABASE y", "a b", "é"])
def test_names_that_are_not_identifiers_are_refused(ch_client: Client, name: str) -> None:
    with pytest.raises(InvalidName):
        create_schema(ch_client, name)
    with pytest.raises(InvalidName):
        ProjectionWriter(ch_client, name)
    with pytest.raises(InvalidName):
        task_detail(ch_client, name, "T1")


def test_store_failures_are_translated(ch_client: Client) -> None:
    with pytest.raises(StoreError) as caught:
        task_detail(ch_client, "no_such_database", "T1")
    assert isinstance(caught.value, NgpuError)
    assert isinstance(caught.value.__cause__, ClickHouseError)
    with pytest.raises(StoreError):
        ProjectionWriter(ch_client, "no_such_database").write(completed_history("T1"))


def test_an_archive_created_without_the_layout_index_gets_it(
    ch_client: Client, database: str
) -> None:
    ch_client.command(f"ALTER TABLE {database}.events DROP INDEX layout_minmax")
    create_schema(ch_client, database)
    indexes = ch_client.query(
        "SELECT name FROM system.data_skipping_indices WHERE database = {db:String}"
        " AND table = 'events'",
        parameters={"db": database},
    ).result_rows
    assert ("layout_minmax",) in indexes
    assert EVENTS.indexes and EVENTS.indexes[0].startswith("layout_minmax")
