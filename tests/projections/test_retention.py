"""Bodies age out (a column TTL), every billing field stays; the TTL follows the setting;
an archive written before bodies had their own column is migrated, still readable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from events import Envelope, encode
from projections import (
    DERIVED,
    ProjectionWriter,
    archived_envelope,
    body_retention,
    create_schema,
    rebuild_from_archive,
    split_archived_bodies,
    task_detail,
    task_status,
    usage,
)
from projections.apply import fact_rows, split_body
from projections.schema import EVENTS, OUTCOMES, SUBMISSIONS, Table
from projections.store import run_insert
from services.bus import EmbeddedBus

from .builders import EVER, TASKS, WORKSPACES, completed_history, fresh_database, mixed_history
from .snapshot import GROUPS, merge_everything, snapshot
from .test_projector import projector_on, running, until

RECENT = "R1"


def recent_history() -> list[Envelope]:
    """A task of a minute ago: younger than any retention."""
    return completed_history(RECENT, start=datetime.now(UTC) - timedelta(minutes=1), seq=7)


def bodiless(envelope: Envelope) -> Envelope:
    """`envelope` as it is once its body aged out."""
    return split_body(envelope)[0]


def stored(client: Client, database: str, table: Table) -> set[tuple[Any, ...]]:
    columns = ", ".join(table.columns)
    return {
        tuple(row)
        for row in client.query(f"SELECT {columns} FROM {database}.{table.name}").result_rows
    }


def expected_facts(history: list[Envelope], table: Table) -> set[tuple[Any, ...]]:
    rows = [row for envelope in history for row in fact_rows(envelope)]
    return {
        tuple(
            value.replace(tzinfo=None) if isinstance(value, datetime) else value
            for value in dataclasses.astuple(row)
        )
        for row in rows
        if isinstance(row, table.row)
    }


def archived(client: Client, database: str) -> dict[str, Envelope]:
    rows = client.query(f"SELECT payload, body FROM {database}.events").result_rows
    found = [archived_envelope(payload, body) for payload, body in rows]
    return {envelope.event_id: envelope for envelope in found}


def test_bodies_age_out_and_every_other_field_stays(ch_client: Client, database: str) -> None:
    old, recent = mixed_history(), recent_history()
    writer = ProjectionWriter(ch_client, database, body_retention_days=30)
    writer.ensure_schema()
    writer.write(old + recent)
    tasks = [*TASKS, RECENT]
    before = snapshot(ch_client, database, WORKSPACES, tasks)

    merge_everything(ch_client, database)  # applies the TTL, as merges do in time

    # The archive: old events come back without their body, recent ones whole.
    assert archived(ch_client, database) == {e.event_id: e for e in [*map(bodiless, old), *recent]}
    # The derived tables: only the old bodies are blank.
    for table in (SUBMISSIONS, OUTCOMES):
        assert stored(ch_client, database, table) == expected_facts(
            [*map(bodiless, old), *recent], table
        )
    after = snapshot(ch_client, database, WORKSPACES, tasks)
    for task in TASKS:
        detail, status = after["details"][task]
        was_detail, was_status = before["details"][task]
        assert (detail.request, detail.response, status.response) == ("", "", "")
        assert detail == dataclasses.replace(was_detail, request="", response="")
        assert status == dataclasses.replace(was_status, response="")
    assert after["details"][RECENT] == before["details"][RECENT]
    assert after["details"][RECENT][0].request == '{"gz": true}'
    assert {k: v for k, v in after.items() if k != "details"} == {
        k: v for k, v in before.items() if k != "details"
    }  # lists, usage, counts

    with fresh_database(ch_client) as other:  # the archive alone still rebuilds it all
        ch_client.command(f"INSERT INTO {other}.events SELECT * FROM {database}.events")
        rebuild_from_archive(ch_client, other)
        assert snapshot(ch_client, other, WORKSPACES, tasks) == after


def test_usage_never_depends_on_bodies(ch_client: Client, database: str) -> None:
    writer = ProjectionWriter(ch_client, database)
    writer.write(mixed_history())
    before = {group: usage(ch_client, database, group, *EVER) for group in GROUPS}
    ProjectionWriter(ch_client, database, body_retention_days=1).ensure_schema()
    merge_everything(ch_client, database)
    detail = task_detail(ch_client, database, "T1")
    assert detail is not None and detail.request == ""
    assert {group: usage(ch_client, database, group, *EVER) for group in GROUPS} == before


def mutations(client: Client, database: str) -> int:
    query = "SELECT count() FROM system.mutations WHERE database = {db:String}"
    return int(client.query(query, parameters={"db": database}).result_rows[0][0])


def ttls(client: Client, database: str) -> dict[str, str]:
    query = "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}"
    rows = client.query(query, parameters={"db": database}).result_rows
    return {name: create for name, create in rows}


def test_the_ttl_follows_the_setting_and_is_set_once(ch_client: Client, database: str) -> None:
    assert body_retention(ch_client, database) is None
    create_schema(ch_client, database, body_retention_days=30)
    assert body_retention(ch_client, database) == 30
    create_tables = ttls(ch_client, database)
    for table, column in (("events", "body"), ("task_submissions", "request_body"),
                          ("task_outcomes", "response_body")):  # fmt: skip
        assert f"`{column}` String TTL toDateTime(" in create_tables[table]
        assert "+ toIntervalDay(30)" in create_tables[table]
    altered = mutations(ch_client, database)
    create_schema(ch_client, database, body_retention_days=30)  # every start: no ALTER
    assert (mutations(ch_client, database), ttls(ch_client, database)) == (altered, create_tables)

    create_schema(ch_client, database, body_retention_days=7)
    assert body_retention(ch_client, database) == 7
    create_schema(ch_client, database)
    assert body_retention(ch_client, database) is None
    assert all(" TTL " not in create for create in ttls(ch_client, database).values())
    create_schema(ch_client, database)

    ProjectionWriter(ch_client, database).write(mixed_history())  # kept: no TTL
    merge_everything(ch_client, database)
    detail = task_detail(ch_client, database, "T1")
    assert detail is not None and detail.request == '{"gz": true}'


@pytest.mark.parametrize("days", [0, -1])
def test_a_retention_under_a_day_is_refused(ch_client: Client, database: str, days: int) -> None:
    with pytest.raises(ValueError, match="body_retention_days"):
        create_schema(ch_client, database, body_retention_days=days)


# The archive as versions before bodies had their own column created and wrote it.
_OLD_EVENTS = (
    "CREATE TABLE {db}.events (`event_id` String, `schema_version` UInt32,"
    " `type` LowCardinality(String), `topic` LowCardinality(String), `key` String,"
    " `occurred_at` DateTime64(6, 'UTC'), `payload` String)"
    " ENGINE = ReplacingMergeTree ORDER BY (topic, key, event_id)"
)
_OLD_COLUMNS = ("event_id", "type", "topic", "key", "occurred_at", "schema_version", "payload")


def old_database(client: Client, name: str, history: list[Envelope]) -> None:
    """`name` as an older version left it: the old archive, and derived tables."""
    client.command(f"CREATE DATABASE {name}")
    client.command(_OLD_EVENTS.format(db=name))
    rows = [
        (e.event_id, e.type, e.topic, e.key, e.occurred_at, e.schema_version, encode(e).decode())
        for e in history
    ]
    run_insert(client, name, "events", rows, _OLD_COLUMNS)
    for table in DERIVED:
        client.command(table.ddl(name))
    ProjectionWriter(client, name).write(history, archive=False)


def test_an_old_archive_stays_readable_and_its_bodies_move_out(ch_client: Client) -> None:
    history = mixed_history()
    with fresh_database(ch_client) as current, fresh_database(ch_client) as old:
        ProjectionWriter(ch_client, current).write(history)
        expected = snapshot(ch_client, current, WORKSPACES, TASKS)
        ch_client.command(f"DROP DATABASE {old} SYNC")
        old_database(ch_client, old, history)
        assert snapshot(ch_client, old, WORKSPACES, TASKS) == expected

        writer = ProjectionWriter(ch_client, old)
        writer.ensure_schema()  # a start of this version: columns added
        writer.ensure_schema()
        assert [c for c in EVENTS.columns if c not in columns(ch_client, old)] == []
        assert snapshot(ch_client, old, WORKSPACES, TASKS) == expected
        rebuild_from_archive(ch_client, old)  # old rows read as they are
        assert snapshot(ch_client, old, WORKSPACES, TASKS) == expected

        assert split_archived_bodies(ch_client, old, batch_size=4) == len(history)
        assert split_archived_bodies(ch_client, old) == 0  # done: nothing to move
        layouts = f"SELECT layout, count() FROM {old}.events GROUP BY layout"
        assert ch_client.query(layouts).result_rows == [(1, len(history))]
        assert archived(ch_client, old) == {e.event_id: e for e in history}
        rebuild_from_archive(ch_client, old)
        assert snapshot(ch_client, old, WORKSPACES, TASKS) == expected

        ProjectionWriter(ch_client, old, body_retention_days=30).ensure_schema()
        merge_everything(ch_client, old)  # the moved bodies age out like any other
        assert archived(ch_client, old) == {e.event_id: bodiless(e) for e in history}
        raw = ch_client.query(f"SELECT payload, body FROM {old}.events").result_rows
        assert not any("gz" in payload or body for payload, body in raw)
        status = task_status(ch_client, old, "T1")
        assert status is not None and status.response == ""


def columns(client: Client, database: str) -> list[str]:
    query = "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'events'"
    return [row[0] for row in client.query(query, parameters={"db": database}).result_rows]


async def test_a_projector_start_migrates_the_archive(ch_client: Client, bus: EmbeddedBus) -> None:
    history = mixed_history()
    with fresh_database(ch_client) as old:
        ch_client.command(f"DROP DATABASE {old} SYNC")
        old_database(ch_client, old, history)
        writer = ProjectionWriter(ch_client, old, body_retention_days=30)
        layouts = f"SELECT layout, count() FROM {old}.events GROUP BY layout"
        async with running(projector_on(bus, writer)):
            await until(lambda: body_retention(ch_client, old) == 30)  # the schema is migrated
            await until(lambda: ch_client.query(layouts).result_rows == [(1, len(history))])
