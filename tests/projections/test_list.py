"""`task_list`: one workspace's tasks in [start, end), in time order, paged by cursor."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client

from projections import InvalidQuery, ProjectionWriter, UnknownCursor, task_list

from .builders import EVER, T0, at, submitted

# (task id, seconds after T0): two share a time, ordered by id; ids do not follow time.
TASKS = [("t-09", 0), ("t-03", 1), ("t-01", 5), ("t-07", 5), ("t-02", 60), ("t-05", 3600)]
IN_ORDER = ["t-09", "t-03", "t-01", "t-07", "t-02", "t-05"]


@pytest.fixture
def listed(writer: ProjectionWriter) -> ProjectionWriter:
    """TASKS in workspace ws-a, shuffled; other workspaces' tasks interleaved."""
    history = [submitted(t, when=at(s), workspace="ws-a") for t, s in TASKS]
    history += [submitted(f"other-{i}", when=at(i), workspace="ws-b") for i in range(6)]
    random.Random(7).shuffle(history)
    writer.write(history[:5])
    writer.write(history[5:])
    return writer


def test_time_order_then_task_id(
    ch_client: Client, database: str, listed: ProjectionWriter
) -> None:
    assert task_list(ch_client, database, "ws-a", *EVER) == IN_ORDER


def test_other_workspaces_are_excluded(
    ch_client: Client, database: str, listed: ProjectionWriter
) -> None:
    assert task_list(ch_client, database, "ws-b", *EVER) == [f"other-{i}" for i in range(6)]
    assert task_list(ch_client, database, "ws-c", *EVER) == []


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (at(0), at(5), ["t-09", "t-03"]),  # end is exclusive
        (at(5), at(60), ["t-01", "t-07"]),  # start is inclusive
        (at(5), at(60.000001), ["t-01", "t-07", "t-02"]),
        (at(0.000001), at(3600), ["t-03", "t-01", "t-07", "t-02"]),
        (at(60), at(60), []),
        (at(61), at(0), []),
    ],
)
def test_bounds(
    ch_client: Client,
    database: str,
    listed: ProjectionWriter,
    start: datetime,
    end: datetime,
    expected: list[str],
) -> None:
    assert task_list(ch_client, database, "ws-a", start, end) == expected


def test_whole_days_as_the_http_layer_asks(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    midnight = T0.replace(hour=0, minute=0, second=0, microsecond=0)
    writer.write(
        [
            submitted("before", when=midnight - timedelta(microseconds=1)),
            submitted("first", when=midnight),
            submitted("last", when=midnight + timedelta(days=1, microseconds=-1)),
            submitted("after", when=midnight + timedelta(days=1)),
        ]
    )
    one_day = (midnight, midnight + timedelta(days=1))
    assert task_list(ch_client, database, "ws-a", *one_day) == ["first", "last"]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 6, 100])
def test_paging_covers_all_without_duplicates(
    ch_client: Client, database: str, listed: ProjectionWriter, size: int
) -> None:
    pages: list[list[str]] = []
    after = None
    for _ in range(len(IN_ORDER) + 1):  # bounded: a cursor that does not advance fails
        page = task_list(ch_client, database, "ws-a", *EVER, limit=size, after=after)
        assert len(page) <= size
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [task for page in pages for task in page] == IN_ORDER
    assert len(pages) == -(-len(IN_ORDER) // size)


def test_paging_within_a_range(ch_client: Client, database: str, listed: ProjectionWriter) -> None:
    window = (at(1), at(61))
    first = task_list(ch_client, database, "ws-a", *window, limit=2)
    rest = task_list(ch_client, database, "ws-a", *window, limit=2, after=first[-1])
    assert (first, rest) == (["t-03", "t-01"], ["t-07", "t-02"])


def test_replayed_submissions_are_listed_once(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    history = [submitted(t, when=at(s)) for t, s in TASKS]
    for _ in range(3):
        writer.write(history)
    assert task_list(ch_client, database, "ws-a", *EVER) == IN_ORDER
    assert task_list(ch_client, database, "ws-a", *EVER, limit=3, after="t-03") == [
        "t-01",
        "t-07",
        "t-02",
    ]


def test_bad_paging_arguments(ch_client: Client, database: str, listed: ProjectionWriter) -> None:
    assert task_list(ch_client, database, "ws-a", *EVER, limit=0) == []
    with pytest.raises(InvalidQuery):
        task_list(ch_client, database, "ws-a", *EVER, limit=-1)
    with pytest.raises(UnknownCursor):
        task_list(ch_client, database, "ws-a", *EVER, after="t-404")
    with pytest.raises(UnknownCursor):  # another workspace's task is no cursor here
        task_list(ch_client, database, "ws-a", *EVER, after="other-1")
    with pytest.raises(UnknownCursor):  # nor is a task outside the range
        task_list(ch_client, database, "ws-a", at(0), at(2), after="t-02")
