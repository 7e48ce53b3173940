"""The usage rollup: pre-aggregated at write time, equal to the answer from the outcomes
(`usage_raw`) whatever was replayed, duplicated or superseded, before and after merges;
a store that predates it is filled once at start."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import Envelope
from projections import (
    GroupBy,
    ProjectionWriter,
    create_schema,
    node_usage,
    rollup_ready,
    task_detail,
    task_list,
    usage,
    usage_raw,
)
from projections.rollup import Winner, reconcile
from projections.rows import LedgerRow
from projections.schema import DERIVED, ROLLUPS

from .builders import (
    EVER,
    T0,
    cancelled,
    completed,
    drop_database,
    expired,
    failed,
    fresh_database,
    submitted,
)

GROUPS: tuple[GroupBy, ...] = ("workspace", "node", "gpu_type", "day", "revision")
MIDNIGHT = T0.replace(hour=0, minute=0, second=0, microsecond=0)
# Window bounds: midnights (whole days from the rollup) and times within days (the
# ledger's partial days), around the histories' times (T0 -1 day to +2 days).
BOUNDS = [MIDNIGHT + timedelta(days=d) for d in range(-1, 4)] + [
    T0 + timedelta(hours=h, seconds=s) for h, s in ((-20, 3), (0, 0), (1, 0.5), (30, 0), (50, 7))
]
_T = datetime


def entry(task: str, event: str, delta: int, gpu_us: int = 5) -> LedgerRow:
    return LedgerRow(task, event, delta, T0, "ws-a", "n1", "A100", 1, gpu_us)


def winner(task: str, event: str, completed: bool = True) -> Winner:
    return Winner(task, event, completed, T0, "ws-a", "n1", "A100", 1, 5)


@pytest.mark.parametrize(
    ("winners", "counted", "expected"),
    [
        ({"A": winner("A", "e1")}, [], [entry("A", "e1", 1)]),  # first count
        ({"A": winner("A", "e1")}, [entry("A", "e1", 1)], []),  # replayed: nothing
        ({"A": winner("A", "e1")}, [entry("A", "e1", 2)], [entry("A", "e1", -1)]),  # twice
        # superseded by an earlier completion, or by an earlier cancel
        ({"A": winner("A", "e0")}, [entry("A", "e1", 1)],
         [entry("A", "e0", 1), entry("A", "e1", -1)]),
        ({"A": winner("A", "x", completed=False)}, [entry("A", "e1", 1)], [entry("A", "e1", -1)]),
        ({"A": winner("A", "x", completed=False)}, [], []),
        # entries of tasks not in this batch are left alone; pieces of one entry add up
        ({"A": winner("A", "e1")}, [entry("B", "e9", 1), entry("A", "e1", 1),
                                    entry("A", "e1", -1)], [entry("A", "e1", 1)]),
    ],
)  # fmt: skip
def test_reconcile(
    winners: dict[str, Winner], counted: list[LedgerRow], expected: list[LedgerRow]
) -> None:
    assert reconcile(winners, counted) == expected


@st.composite
def histories(draw: st.DrawFn) -> list[list[Envelope]]:
    """Tasks with zero to three terminal events each (any kind, any order in time, ties
    included), written in batches as the bus would deliver them, some events twice and
    some batches again (replays)."""
    prefix = uuid.uuid4().hex[:6]  # the examples share a database: tasks apart
    events: list[Envelope] = []
    for n in range(draw(st.integers(1, 8))):
        task = f"{prefix}-{n}"
        ws = draw(st.sampled_from(["ws-a", "ws-b"]))
        events.append(submitted(task, workspace=ws, when=T0 - timedelta(hours=30)))
        for k in range(draw(st.integers(0, 3))):
            when = T0 + timedelta(
                hours=draw(st.integers(-24, 48)), seconds=draw(st.sampled_from([0, 0.5, 1]))
            )
            event_id = f"{draw(st.sampled_from('abc'))}{task}-{k}"  # ties broken by id
            kind = draw(
                st.sampled_from(["completed", "completed", "cancelled", "failed", "expired"])
            )
            if kind == "completed":
                ran = timedelta(seconds=draw(st.integers(0, 5000)) / 10)
                events.append(completed(
                    task, when - ran, when, workspace=ws, event_id=event_id,
                    node=draw(st.sampled_from(["n1", "n2"])),
                    gpu_type=draw(st.sampled_from(["A100", "H100"])),
                    gpu_count=draw(st.integers(0, 2)), revision=draw(st.integers(0, 2)),
                ))  # fmt: skip
            elif kind == "cancelled":
                events.append(cancelled(task, when, workspace=ws, event_id=event_id))
            elif kind == "failed":
                events.append(failed(task, when, retryable=False, workspace=ws, event_id=event_id))
            else:
                events.append(expired(task, when, workspace=ws, event_id=event_id))
    duplicated = events + draw(st.lists(st.sampled_from(events), max_size=4))
    order = random.Random(draw(st.integers(0, 2**16)))
    order.shuffle(duplicated)
    cuts = sorted(draw(st.lists(st.integers(0, len(duplicated)), max_size=3)))
    batches = [duplicated[a:b] for a, b in zip([0, *cuts], [*cuts, len(duplicated)], strict=True)]
    replays = draw(st.lists(st.integers(0, len(batches) - 1), max_size=2))
    return [b for b in batches + [batches[i] for i in replays] if b]


def assert_rollup_equals_raw(client: Client, database: str, windows: list[tuple[_T, _T]]) -> None:
    for start, end in windows:
        for group_by in GROUPS:
            for ws, node in ((None, None), ("ws-a", None), (None, "n1"), ("ws-b", "n2")):
                got = usage(client, database, group_by, start, end, ws, node)
                assert got == usage_raw(client, database, group_by, start, end, ws, node), (
                    group_by, start, end, ws, node,
                )  # fmt: skip


@pytest.fixture(scope="module")
def shared(ch_client: Client) -> object:
    name = f"rollup_{uuid.uuid4().hex[:8]}"
    create_schema(ch_client, name)
    yield name
    drop_database(ch_client, name)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=histories(),
    windows=st.lists(
        st.tuples(st.sampled_from(BOUNDS), st.sampled_from(BOUNDS)), min_size=1, max_size=2
    ),
)
def test_the_rollup_equals_the_outcomes_whatever_came_twice_or_late(
    ch_client: Client, shared: str, batches: list[list[Envelope]], windows: list[tuple[_T, _T]]
) -> None:
    # Every example adds its tasks to one database: the equality holds over all of them.
    writer = ProjectionWriter(ch_client, shared)
    for batch in batches:
        writer.write(batch)
    assert_rollup_equals_raw(ch_client, shared, [EVER, *windows])


def test_answers_hold_after_merges(ch_client: Client, shared: str) -> None:
    # Run after the property above has filled the database: merges of the ledger
    # (never collapsed) and the rollup (sums; zero rows removed) change no answer.
    for table in ("task_outcomes", "usage_ledger", "usage_daily"):
        ch_client.command(f"OPTIMIZE TABLE {shared}.{table} FINAL")
    assert_rollup_equals_raw(ch_client, shared, [EVER, (BOUNDS[1], BOUNDS[7])])


def test_node_usage_is_the_admins_slice(ch_client: Client, shared: str) -> None:
    for node in ("n1", "n2"):
        rows = node_usage(ch_client, shared, node, *EVER)
        by_day = usage(ch_client, shared, "day", *EVER, node_id=node)
        totals: dict[str, tuple[int, float]] = {}
        for row in rows:
            tasks, seconds = totals.get(row.day, (0, 0.0))
            totals[row.day] = (tasks + row.tasks, seconds + row.gpu_seconds)
        assert {d: t for d, (t, _) in totals.items()} == {r.key: r.tasks for r in by_day}
        for day, (_, seconds) in totals.items():
            assert seconds == pytest.approx(next(r.gpu_seconds for r in by_day if r.key == day))


def test_a_store_from_before_the_rollup_is_filled_once(ch_client: Client) -> None:
    history = [
        *[e for i in range(6) for e in (
            submitted(f"T{i}", workspace=f"ws-{'ab'[i % 2]}"),
            completed(f"T{i}", T0, T0 + timedelta(seconds=i + 1), node=f"n{i % 2 + 1}"),
        )],
        cancelled("T0", T0 - timedelta(seconds=1)),  # T0's completion does not count
    ]  # fmt: skip
    with fresh_database(ch_client) as db:
        ProjectionWriter(ch_client, db).write(history)
        expected = {g: usage(ch_client, db, g, *EVER) for g in GROUPS}
        assert expected["workspace"] and sum(r.tasks for r in expected["workspace"]) == 5
        # As an older version left it: the derived tables only.
        for table in ROLLUPS:
            ch_client.command(f"DROP TABLE {db}.{table.name} SYNC")
        ch_client.command(f"DROP VIEW {db}.usage_daily_mv SYNC")
        assert not rollup_ready(ch_client, db)
        assert {g: usage(ch_client, db, g, *EVER) for g in GROUPS} == expected  # from outcomes
        ProjectionWriter(ch_client, db).write(history[:2])  # an old store's writer: no ledger
        create_schema(ch_client, db)  # a start of this version
        assert rollup_ready(ch_client, db)
        create_schema(ch_client, db)  # filled once, not again
        assert {g: usage(ch_client, db, g, *EVER) for g in GROUPS} == expected
        rollup = ch_client.query(f"SELECT sum(tasks) FROM {db}.usage_daily").result_rows
        assert rollup == [(5,)]
        # A fill cut short (the mark not set) is done again from the start.
        ch_client.command(f"ALTER TABLE {db}.usage_ledger MODIFY COMMENT ''")
        create_schema(ch_client, db)
        assert {g: usage(ch_client, db, g, *EVER) for g in GROUPS} == expected
        assert ch_client.query(f"SELECT sum(tasks) FROM {db}.usage_daily").result_rows == [(5,)]


def test_a_submissions_table_from_before_gets_the_projection(ch_client: Client) -> None:
    with fresh_database(ch_client) as db:
        for table in (*DERIVED, *ROLLUPS):
            ch_client.command(f"DROP TABLE IF EXISTS {db}.{table.name} SYNC")
        old = "CREATE TABLE {db}.task_submissions (task_id String, event_id String,"
        old += " schema_version UInt32, submitted_at DateTime64(6, 'UTC'), workspace_id String)"
        old += (
            " ENGINE = ReplacingMergeTree ORDER BY (workspace_id, submitted_at, task_id, event_id)"
        )
        ch_client.command(old.format(db=db))
        ch_client.command(
            f"INSERT INTO {db}.task_submissions VALUES ('T1', 'e1', 1, now(), 'ws-a')"
        )
        create_schema(ch_client, db)
        names = ch_client.query(
            "SELECT table, name FROM system.projections WHERE database = {db:String}",
            parameters={"db": db},
        ).result_rows
        assert ("task_submissions", "by_task") in names
        assert usage(ch_client, db, "day", *EVER) == []
        ProjectionWriter(ch_client, db).write([submitted("T2")])
        assert task_list(ch_client, db, "ws-a", *EVER) == ["T2", "T1"]  # T1 was submitted now
        assert task_detail(ch_client, db, "T2") is not None
