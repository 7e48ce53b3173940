"""`task_detail` and `task_status` against the real engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from clickhouse_connect.driver.client import Client

from events import Envelope
from projections import ProjectionWriter, TaskState, task_detail, task_status

from .builders import (
    T0,
    at,
    cancelled,
    completed,
    completed_history,
    dispatched,
    expired,
    failed,
    retried,
    submitted,
)

# The `taskInfo` fields of docs/ngpu-api-integration.md with their types.
CONTRACT_TYPES = {
    "id": int,
    "userkey": str,
    "btcaddress": str,
    "workspaceid": str,
    "taskid": str,
    "requrl": str,
    "method": str,
    "userip": str,
    "nodeip": str,
    "nodeaddr": str,
    "requesttime": str,
    "responsetime": str,
    "request": str,
    "state": int,
    "response": str,
    "recordDursion": int,
    "videodursion": int,
    "gpudursion": int,
    "watermarktime": str,
    "watermarkres": str,
}


def info(client: Client, database: str, task_id: str) -> dict[str, int | str]:
    detail = task_detail(client, database, task_id)
    assert detail is not None
    task_info = detail.task_info()
    assert {key: type(value) for key, value in task_info.items()} == CONTRACT_TYPES
    return task_info


def test_completed_task_fills_every_field(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    writer.write(completed_history("20240415_14_30_09_891041", workspace="367614711220405248"))
    assert info(ch_client, database, "20240415_14_30_09_891041") == {
        "id": 1,
        "userkey": "ts-22a51e64",
        "btcaddress": "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus",
        "workspaceid": "367614711220405248",
        "taskid": "20240415_14_30_09_891041",
        "requrl": "/user/schedulingTask?paramUrl=create",
        "method": "schedulingTask",
        "userip": "94.74.66.215",
        "nodeip": "10.0.0.1",
        "nodeaddr": "0xn1",
        "requesttime": "2024-04-15 14:30:09",
        "responsetime": "2024-04-15 14:30:11",  # finished 1.8 s after the request
        "request": '{"gz": true}',
        "state": 3,
        "response": '{"task_id": "37a41eba"}',
        "recordDursion": 2,  # 1.8 s, rounded up
        "videodursion": 0,
        "gpudursion": 3,  # 1.5 s x 2 GPUs
        "watermarktime": "",
        "watermarkres": "",
    }
    detail = task_detail(ch_client, database, "20240415_14_30_09_891041")
    assert detail is not None
    assert detail.workspace_id == "367614711220405248"


def test_short_work_still_counts_at_least_a_second(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    quick = [
        submitted("T1", when=T0),
        completed("T1", at(0.001), at(0.011), gpu_count=1),
    ]
    writer.write(quick)
    task_info = info(ch_client, database, "T1")
    assert task_info["recordDursion"] == 1
    assert task_info["gpudursion"] == 1


def test_response_time_is_when_the_container_finished(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    reported_late = completed("T1", at(0.5), at(1.8), when=at(9))
    writer.write([submitted("T1"), reported_late])
    task_info = info(ch_client, database, "T1")
    assert (task_info["responsetime"], task_info["recordDursion"]) == ("2024-04-15 14:30:11", 2)


def test_task_in_flight(ch_client: Client, database: str, writer: ProjectionWriter) -> None:
    writer.write([submitted("T1")])
    queued = info(ch_client, database, "T1")
    assert (queued["state"], queued["nodeip"], queued["nodeaddr"]) == (0, "", "")
    assert (queued["responsetime"], queued["response"]) == ("", "")
    assert (queued["recordDursion"], queued["gpudursion"]) == (0, 0)

    writer.write([dispatched("T1", at(0.2), node="n4")])
    running = info(ch_client, database, "T1")
    assert (running["state"], running["nodeip"], running["nodeaddr"]) == (1, "10.0.0.4", "0xn4")
    assert running["responsetime"] == ""


def test_retried_task_reports_the_node_that_answered(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    writer.write(
        [
            submitted("T1"),
            dispatched("T1", at(0.1), node="n1"),
            failed("T1", at(1), retryable=True, node="n1"),
            retried("T1", at(1.1), attempt=2),
        ]
    )
    assert info(ch_client, database, "T1")["state"] == TaskState.QUEUED
    writer.write(
        [
            dispatched("T1", at(1.2), attempt=2, node="n2"),
            completed("T1", at(1.3), at(2.3), attempt=2, node="n2", gpu_count=1),
        ]
    )
    task_info = info(ch_client, database, "T1")
    assert (task_info["state"], task_info["nodeip"], task_info["gpudursion"]) == (3, "10.0.0.2", 1)


ENDINGS: list[tuple[str, Envelope, TaskState, str, str]] = [
    (
        "failed",
        failed("T1", at(5), retryable=False),
        TaskState.FAILED,
        "node_error",
        "container answered 500",
    ),
    ("cancelled", cancelled("T1", at(5)), TaskState.CANCELLED, "cancelled", "caller gave up"),
    ("expired", expired("T1", at(5)), TaskState.EXPIRED, "expired", "waited 3600.0 s"),
]


@pytest.mark.parametrize(
    ("case", "end", "state", "code", "reason"), ENDINGS, ids=[e[0] for e in ENDINGS]
)
def test_unsuccessful_endings(
    ch_client: Client,
    database: str,
    writer: ProjectionWriter,
    case: str,
    end: Envelope,
    state: TaskState,
    code: str,
    reason: str,
) -> None:
    writer.write([submitted("T1"), dispatched("T1", at(1)), end])
    task_info = info(ch_client, database, "T1")
    assert task_info["state"] == state
    assert task_info["responsetime"] == "2024-04-15 14:30:14"  # when it ended
    assert task_info["recordDursion"] == 5
    assert task_info["gpudursion"] == 0
    assert task_info["nodeip"] == "10.0.0.1"
    status = task_status(ch_client, database, "T1")
    assert status is not None
    assert (status.state, status.code, status.workspace_id) == (state, code, "ws-a")
    assert reason in status.reason


def test_first_terminal_event_wins_whatever_the_write_order(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    late_completion = completed("T1", at(1), at(3))
    early_cancel = cancelled("T1", at(2))
    writer.write([submitted("T1"), late_completion])
    writer.write([early_cancel])
    task_info = info(ch_client, database, "T1")
    assert (task_info["state"], task_info["response"], task_info["gpudursion"]) == (5, "", 0)
    status = task_status(ch_client, database, "T1")
    assert status is not None
    assert status.state is TaskState.CANCELLED


def test_simultaneous_terminal_events_are_ordered_by_event_id(
    ch_client: Client, database: str, writer: ProjectionWriter
) -> None:
    writer.write(
        [
            submitted("T1"),
            expired("T1", at(2), event_id="b-expired"),
            failed("T1", at(2), retryable=False, event_id="a-failed"),
        ]
    )
    assert info(ch_client, database, "T1")["state"] == TaskState.FAILED


def test_first_submission_wins(ch_client: Client, database: str, writer: ProjectionWriter) -> None:
    writer.write([submitted("T1", seq=8, when=T0 + timedelta(seconds=1))])
    writer.write([submitted("T1", seq=7, when=T0)])
    task_info = info(ch_client, database, "T1")
    assert (task_info["id"], task_info["requesttime"]) == (7, "2024-04-15 14:30:09")


def test_completed_status(ch_client: Client, database: str, writer: ProjectionWriter) -> None:
    writer.write(completed_history("T1"))
    status = task_status(ch_client, database, "T1")
    assert status is not None
    assert (status.state, status.status_code, status.response, status.response_encoding) == (
        TaskState.COMPLETED,
        200,
        '{"task_id": "37a41eba"}',
        "utf-8",
    )
    assert status.ended_at == at(1.8)


def test_unknown_task(ch_client: Client, database: str, writer: ProjectionWriter) -> None:
    writer.write(completed_history("T1"))
    assert task_detail(ch_client, database, "T2") is None
    assert task_status(ch_client, database, "T2") is None
    writer.write([dispatched("T3", at(1))])  # facts without a submission are not a task
    assert task_detail(ch_client, database, "T3") is None
