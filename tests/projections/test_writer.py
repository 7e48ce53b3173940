"""`ProjectionWriter`: batched, idempotent, and safe beside readers on one client."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from projections import (
    ProjectionWriter,
    UsageRow,
    event_count,
    task_count,
    task_detail,
    task_list,
    usage,
)
from projections.schema import TABLE_NAMED, TABLES
from projections.writer import table_rows

from .builders import EVER, T0, at, completed_history, mixed_history, submitted


def test_write_counts_distinct_events(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    history = completed_history("T1")
    assert writer.write([]) == 0
    assert writer.write(history + history[:2]) == 3
    assert writer.write(history) == 3
    assert (event_count(ch_client, database), task_count(ch_client, database)) == (3, 1)


def test_one_insert_per_table_per_batch(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    writer.write([e for i in range(50) for e in completed_history(f"T{i}", start=at(i))])
    parts = ch_client.query(
        "SELECT table, count() FROM system.parts WHERE database = {db:String}"
        " GROUP BY table ORDER BY table",
        parameters={"db": database},
    ).result_rows
    assert parts == [
        ("events", 1),
        ("task_dispatches", 1),
        ("task_outcomes", 1),
        ("task_submissions", 1),
        ("usage_daily", 1),  # the usage ledger's view
        ("usage_ledger", 1),
    ]


def test_writing_while_other_threads_read(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    """The embedded deployment: the projector writes from a worker thread while request
    handlers query from others, all through one client."""
    histories = [completed_history(f"T{i:03d}", start=at(i)) for i in range(100)]

    def write_all() -> None:
        for first in range(0, 100, 10):
            writer.write([e for h in histories[first : first + 10] for e in h])

    def read(k: int) -> None:
        for i in range(60):
            task_detail(ch_client, database, f"T{(7 * i + k) % 100:03d}")
            task_list(ch_client, database, "ws-a", *EVER, limit=10)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(write_all), pool.submit(read, 0), pool.submit(read, 1)]
        for future in futures:
            future.result()
    assert len(task_list(ch_client, database, "ws-a", *EVER)) == 100
    assert usage(ch_client, database, "workspace", *EVER) == [UsageRow("ws-a", 100, 300.0)]


def _comparable(value: object) -> object:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return list(value) if isinstance(value, tuple | list) else value


def test_every_column_of_every_table_round_trips_exactly(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    # Rows travel as JSON text: strings JSON must escape, non-BMP characters, a 63-bit
    # integer, times on an exact second and to the microsecond, NULLs and arrays.
    tricky = 'quote " backslash \\ newline \n tab \t control \x01 ünïcode 🙂 </script>'
    history = [
        *mixed_history(),
        submitted("T7", seq=2**62 + 5, when=T0.replace(microsecond=0), request_body=tricky,
                  user_ip="::1", btc_address=""),
        *completed_history("T8", start=at(0.000001)),
    ]  # fmt: skip
    expected = table_rows(history)
    writer.write(history)
    assert len(expected) == len(TABLES)  # the history reaches every table
    for name, rows in expected.items():
        columns = TABLE_NAMED[name].columns
        stored = ch_client.query(f"SELECT {', '.join(columns)} FROM {database}.{name}").result_rows
        assert sorted(repr([_comparable(v) for v in row]) for row in stored) == sorted(
            repr([_comparable(v) for v in row]) for row in rows
        ), name
