"""The operator's reads behind the dashboard: `recent_tasks` (every workspace's tasks,
newest first, with their state), `recent_failures` (each workspace's latest failures)
and `queue_delay` (submission to first dispatch, per time bucket). Each is right before
merges: the history is written twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client

from events import Envelope
from projections import (
    DelayBucket,
    InvalidQuery,
    ProjectionWriter,
    TaskFailure,
    TaskState,
    queue_delay,
    recent_failures,
    recent_tasks,
)

from .builders import EVER, at, dispatched, failed, mixed_history, retried, submitted

S = TaskState


def history() -> list[Envelope]:
    """`mixed_history` (T1-T6) and two more: T7 running on n2, T8 failed for good."""
    return [
        *mixed_history(),
        submitted("T7", workspace="ws-b", when=at(70)),
        dispatched("T7", at(71), node="n2", workspace="ws-b"),
        submitted("T8", when=at(80)),
        dispatched("T8", at(81)),
        failed("T8", at(82), retryable=False),
    ]


@pytest.fixture
def written(writer: ProjectionWriter) -> ProjectionWriter:
    writer.write(history())
    writer.write(history())  # a replay: copies of each event, not merged yet
    return writer


def _lines(ch_client: Client, database: str, **options: object) -> list[tuple[object, ...]]:
    found = recent_tasks(ch_client, database, *EVER, **options)  # type: ignore[arg-type]
    return [(t.task_id, t.state, t.attempts, t.node_id) for t in found]


ALL = [
    ("T3", S.COMPLETED, 1, "n2"),
    ("T8", S.FAILED, 1, "n1"),
    ("T7", S.RUNNING, 1, "n2"),
    ("T6", S.EXPIRED, 0, ""),
    ("T5", S.CANCELLED, 0, ""),
    ("T4", S.QUEUED, 1, "n1"),
    ("T2", S.COMPLETED, 1, "n2"),
    ("T1", S.COMPLETED, 1, "n1"),
]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, ALL, id="all"),
        pytest.param({"limit": 2}, ALL[:2], id="limit"),
        pytest.param({"workspace_id": "ws-b"}, [ALL[2], ALL[4], ALL[6]], id="workspace"),
        pytest.param({"states": [S.QUEUED, S.RUNNING]}, [ALL[2], ALL[5]], id="waiting"),
        pytest.param(
            {"states": [S.COMPLETED], "workspace_id": "ws-a"},
            [ALL[0], ALL[7]],
            id="completed-of-one-workspace",
        ),
        pytest.param({"workspace_id": "ws-z"}, [], id="unknown-workspace"),
    ],
)
def test_recent_tasks_lists_newest_first_with_their_state(
    ch_client: Client,
    database: str,
    written: ProjectionWriter,
    options: dict[str, object],
    expected: list[tuple[object, ...]],
) -> None:
    assert _lines(ch_client, database, **options) == expected


def test_a_recent_task_carries_its_submission_and_its_end(
    ch_client: Client, database: str, written: ProjectionWriter
) -> None:
    by_id = {t.task_id: t for t in recent_tasks(ch_client, database, *EVER)}
    done, running, failure = by_id["T1"], by_id["T7"], by_id["T8"]
    assert (done.workspace_id, done.submitted_at, done.mode, done.param_url) == (
        "ws-a", at(0), "async", "create",
    )  # fmt: skip
    assert (done.status_code, done.ended_at, done.gpu_us) == (200, at(1.8), 3_000_000)
    assert (running.ended_at, running.status_code, running.gpu_us) == (None, 0, 0)
    assert (failure.code, failure.status_code, failure.ended_at) == ("node_error", 500, at(82))


def test_recent_tasks_keeps_to_its_time_range(
    ch_client: Client, database: str, written: ProjectionWriter
) -> None:
    found = recent_tasks(ch_client, database, at(30), at(60))
    assert [t.task_id for t in found] == ["T5", "T4", "T2"]


def test_recent_failures_are_each_workspaces_latest(
    ch_client: Client, database: str, written: ProjectionWriter
) -> None:
    t8 = TaskFailure("T8", "ws-a", "failed", at(82), "n1", 500, "node_error",
                     "container answered 500")  # fmt: skip
    t6 = TaskFailure("T6", "ws-a", "expired", at(3660), "", 0, "expired",
                     "no capacity within the task's TTL (waited 3600.0 s)")  # fmt: skip
    assert recent_failures(ch_client, database, *EVER) == [t6, t8]
    assert recent_failures(ch_client, database, *EVER, per_workspace=1) == [t6]
    assert recent_failures(ch_client, database, at(0), at(3600)) == [t8]


B = datetime(2024, 4, 15, 14, 30, tzinfo=UTC)
"""The start of a minute: the buckets' edges."""


def _waited(task_id: str, dispatched_at: datetime, wait_s: float, **where: str) -> list[Envelope]:
    workspace = where.get("workspace", "ws-a")
    return [
        submitted(task_id, workspace=workspace, when=dispatched_at - timedelta(seconds=wait_s)),
        dispatched(task_id, dispatched_at, workspace=workspace),
    ]


def delays() -> list[Envelope]:
    """Ten tasks first dispatched in B's minute, having waited 1 to 10 s, and a retried
    one (5.5 s: its first wait only, the second dispatch is in the third minute); none in
    the next minute; one in the third (4 s, of ws-b). One dispatched before the range and
    one never dispatched are not counted. The exact 90th percentile of B's eleven is the
    tenth smallest (rank floor(0.9 x 11) = 9 from 0): 9 s."""
    events = [e for n in range(1, 11) for e in _waited(f"D{n}", B + timedelta(seconds=n), n)]
    events += _waited("D11", B + timedelta(seconds=130), 4, workspace="ws-b")
    events += [
        *_waited("R1", B + timedelta(seconds=30), 5.5),
        failed("R1", B + timedelta(seconds=31), retryable=True),
        retried("R1", B + timedelta(seconds=32)),
        dispatched("R1", B + timedelta(seconds=150), attempt=2),
        *_waited("EARLY", B - timedelta(seconds=1), 100),
        submitted("NEVER", when=B),
    ]
    return events


def test_queue_delay_per_bucket(ch_client: Client, database: str, writer: ProjectionWriter) -> None:
    writer.write(delays())
    writer.write(delays())
    window = (B, B + timedelta(minutes=10))
    assert queue_delay(ch_client, database, *window) == [
        DelayBucket(B, 11, 5.5, 9.0, 10.0),
        DelayBucket(B + timedelta(minutes=2), 1, 4.0, 4.0, 4.0),
    ]
    assert queue_delay(ch_client, database, *window, workspace_id="ws-b") == [
        DelayBucket(B + timedelta(minutes=2), 1, 4.0, 4.0, 4.0),
    ]
    assert queue_delay(ch_client, database, *window, bucket_s=600) == [
        DelayBucket(B, 12, 64.5 / 12, 9.0, 10.0),
    ]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c, d: recent_tasks(c, d, *EVER, limit=-1), id="negative-limit"),
        pytest.param(lambda c, d: recent_failures(c, d, *EVER, per_workspace=-1), id="per-ws"),
        pytest.param(lambda c, d: queue_delay(c, d, *EVER, bucket_s=0), id="zero-bucket"),
    ],
)
def test_bad_arguments_are_refused(ch_client: Client, database: str, call: object) -> None:
    with pytest.raises(InvalidQuery):
        call(ch_client, database)  # type: ignore[operator]
