"""`usage`: GPU time of completed tasks by workspace, node, GPU type and day."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client

from events import Envelope
from projections import InvalidQuery, ProjectionWriter, UsageRow, usage

from .builders import T0, cancelled, completed, failed, submitted

DAY1 = T0.replace(hour=0, minute=0, second=0, microsecond=0)
DAY2, DAY3 = DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)
RANGE = (DAY1, DAY3)


def done(
    task: str,
    ws: str,
    node: str,
    gpu: str,
    gpus: int,
    start: datetime,
    seconds: float,
    revision: int = 1,
) -> list[Envelope]:
    end = start + timedelta(seconds=seconds)
    return [
        submitted(task, workspace=ws, when=start - timedelta(seconds=1)),
        completed(
            task,
            start,
            end,
            workspace=ws,
            node=node,
            gpu_type=gpu,
            gpu_count=gpus,
            revision=revision,
        ),
    ]


def history() -> list[Envelope]:
    noon1, noon2 = DAY1 + timedelta(hours=12), DAY2 + timedelta(hours=12)
    return [
        *done("A", "ws-a", "n1", "A100", 2, noon1, 1.5),  # 3 GPU s
        *done("B", "ws-a", "n2", "H100", 1, noon1, 10, revision=2),  # 10 GPU s
        *done("C", "ws-b", "n1", "A100", 4, noon2, 0.25),  # 1 GPU s
        submitted("D", workspace="ws-b", when=noon2),
        failed("D", noon2, retryable=False, workspace="ws-b"),
        submitted("E", when=noon1),
        cancelled("E", noon1 + timedelta(seconds=1)),  # first: the completion does not count
        completed("E", noon1, noon1 + timedelta(seconds=9), node="n2"),
        *done("F", "ws-a", "n1", "A100", 1, DAY3 - timedelta(seconds=5), 5),  # ends at DAY3
        *done("G", "ws-a", "n1", "A100", 1, DAY1 - timedelta(seconds=5), 4),  # day before
    ]


@pytest.fixture
def used(writer: ProjectionWriter) -> ProjectionWriter:
    writer.write(history())
    return writer


EXPECTED = {
    "workspace": [UsageRow("ws-a", 2, 13.0), UsageRow("ws-b", 1, 1.0)],
    "node": [UsageRow("n1", 2, 4.0), UsageRow("n2", 1, 10.0)],
    "gpu_type": [UsageRow("A100", 2, 4.0), UsageRow("H100", 1, 10.0)],
    "day": [UsageRow(DAY1.date().isoformat(), 2, 13.0), UsageRow(DAY2.date().isoformat(), 1, 1.0)],
    "revision": [
        UsageRow("ws-a@1", 1, 3.0),
        UsageRow("ws-a@2", 1, 10.0),
        UsageRow("ws-b@1", 1, 1.0),
    ],
}


@pytest.mark.parametrize("group_by", sorted(EXPECTED))
def test_usage_by(ch_client: Client, database: str, used: ProjectionWriter, group_by: str) -> None:
    assert usage(ch_client, database, group_by, *RANGE) == EXPECTED[group_by]  # type: ignore[arg-type]


def test_usage_of_one_workspace(ch_client: Client, database: str, used: ProjectionWriter) -> None:
    assert usage(ch_client, database, "node", *RANGE, workspace_id="ws-b") == [
        UsageRow("n1", 1, 1.0)
    ]
    assert usage(ch_client, database, "day", *RANGE, workspace_id="ws-z") == []


def test_range_end_is_exclusive(ch_client: Client, database: str, used: ProjectionWriter) -> None:
    everything = (DAY1 - timedelta(days=1), DAY3 + timedelta(seconds=1))
    days = usage(ch_client, database, "day", *everything)
    assert [row.key for row in days] == [
        (DAY1 - timedelta(days=1)).date().isoformat(),
        DAY1.date().isoformat(),
        DAY2.date().isoformat(),
        DAY3.date().isoformat(),
    ]
    assert usage(ch_client, database, "day", DAY3, DAY3 + timedelta(seconds=1)) == [
        UsageRow(DAY3.date().isoformat(), 1, 5.0)
    ]


def test_unknown_grouping(ch_client: Client, database: str) -> None:
    with pytest.raises(InvalidQuery):
        usage(ch_client, database, "userkey", *RANGE)  # type: ignore[arg-type]
