"""`rows_for`: pure, table-driven per event type."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import EVENT_TYPES, Envelope, EventDecodeError, TaskDispatched, decode, encode
from events.task import TaskEvent
from projections import (
    DispatchRow,
    EventRow,
    OutcomeRow,
    RequeueRow,
    Row,
    SubmissionRow,
    archived_envelope,
)
from projections.apply import int64, join_body, rows_for, split_body, utc
from projections.writer import table_rows
from tests.events.strategies import envelopes

from .builders import (
    T0,
    at,
    cancelled,
    completed,
    dispatched,
    envelope,
    expired,
    failed,
    retried,
    submitted,
)

SUB = submitted("T1", seq=2687)
DIS = dispatched("T1", at(0.2), attempt=1, node="n3")
DONE = completed("T1", at(0.5), at(2.0), node="n3", gpu_count=2)
FAIL_SOFT = failed("T1", at(1), retryable=True, attempt=1, node="n3")
FAIL_HARD = failed("T1", at(1), retryable=False, attempt=2, node="n3")
RETRY = retried("T1", at(1.1), attempt=2)
CANCEL = cancelled("T1", at(3))
EXPIRE = expired("T1", at(4))


def _outcome(env: Envelope, **fields: object) -> OutcomeRow:
    base: dict[str, object] = {
        "task_id": "T1",
        "event_id": env.event_id,
        "schema_version": 1,
        "occurred_at": env.occurred_at,
        "workspace_id": "ws-a",
        "attempt": 0,
        "node_id": "",
        "node_ip": "",
        "node_address": "",
        "status_code": 0,
        "response_body": "",
        "body_encoding": "utf-8",
        "content_type": "",
        "started_at": None,
        "finished_at": None,
        "ended_at": env.occurred_at,
        "gpu_type": "",
        "gpu_count": 0,
        "gpu_us": 0,
        "code": "",
        "reason": "",
    }
    base.update(fields)
    return OutcomeRow(**base)  # type: ignore[arg-type]


CASES: list[tuple[str, Envelope, Row]] = [
    (
        "submitted",
        SUB,
        SubmissionRow(
            task_id="T1",
            event_id=SUB.event_id,
            schema_version=1,
            submitted_at=T0,
            workspace_id="ws-a",
            seq=2687,
            userkey="ts-22a51e64",
            btc_address="bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus",
            mode="async",
            method="schedulingTask",
            request_url="/user/schedulingTask?paramUrl=create",
            param_url="create",
            param_port=8080,
            user_ip="94.74.66.215",
            request_body='{"gz": true}',
            body_encoding="utf-8",
            content_type="application/json",
            gpu_type="A100",
            gpu_count=2,
            timeout_s=60.0,
            priority=0,
            ttl_s=3600.0,
        ),
    ),
    (
        "dispatched",
        DIS,
        DispatchRow(
            task_id="T1",
            event_id=DIS.event_id,
            schema_version=1,
            dispatched_at=at(0.2),
            workspace_id="ws-a",
            attempt=1,
            node_id="n3",
            node_ip="10.0.0.3",
            node_address="0xn3",
            deployment_id="dep-n3",
            host_port=31000,
        ),
    ),
    (
        "completed",
        DONE,
        _outcome(
            DONE,
            kind="completed",
            attempt=1,
            node_id="n3",
            node_ip="10.0.0.3",
            node_address="0xn3",
            status_code=200,
            response_body='{"task_id": "37a41eba"}',
            content_type="application/json",
            started_at=at(0.5),
            finished_at=at(2.0),
            ended_at=at(2.0),
            gpu_type="A100",
            gpu_count=2,
            gpu_us=3_000_000,
        ),
    ),
    (
        "failed for good",
        FAIL_HARD,
        _outcome(
            FAIL_HARD,
            kind="failed",
            attempt=2,
            node_id="n3",
            status_code=500,
            response_body="boom",
            code="node_error",
            reason="container answered 500",
        ),
    ),
    (
        "failed, retryable",
        FAIL_SOFT,
        RequeueRow(
            task_id="T1",
            event_id=FAIL_SOFT.event_id,
            schema_version=1,
            requeued_at=at(1),
            workspace_id="ws-a",
            kind="failed",
            attempt=1,
            node_id="n3",
            code="node_error",
            reason="container answered 500",
            excluded_node_ids=(),
        ),
    ),
    (
        "retried",
        RETRY,
        RequeueRow(
            task_id="T1",
            event_id=RETRY.event_id,
            schema_version=1,
            requeued_at=at(1.1),
            workspace_id="ws-a",
            kind="retried",
            attempt=2,
            node_id="",
            code="",
            reason="node_error",
            excluded_node_ids=("n1",),
        ),
    ),
    (
        "cancelled",
        CANCEL,
        _outcome(CANCEL, kind="cancelled", code="cancelled", reason="caller gave up"),
    ),
    (
        "expired",
        EXPIRE,
        _outcome(
            EXPIRE,
            kind="expired",
            code="expired",
            reason="no capacity within the task's TTL (waited 3600.0 s)",
        ),
    ),
]


@pytest.mark.parametrize(("case", "env", "fact"), CASES, ids=[c[0] for c in CASES])
def test_task_event_yields_raw_row_and_its_fact(case: str, env: Envelope, fact: Row) -> None:
    raw, *facts = rows_for(env)
    assert facts == [fact]
    assert isinstance(raw, EventRow)
    assert raw == EventRow(
        event_id=env.event_id,
        type=env.type,
        topic="ngpu.tasks",
        key="T1",
        occurred_at=env.occurred_at,
        schema_version=1,
        payload=raw.payload,
        body=raw.body,
        layout=1,
    )
    assert archived_envelope(raw.payload, raw.body) == env


@pytest.mark.parametrize(
    ("env", "field"),
    [
        (SUB, "request_body"),
        (envelope(dataclasses.replace(cast(TaskDispatched, DIS.event), request_body="{}"),
                  DIS.occurred_at), "request_body"),
        (DONE, "response_body"),
        (FAIL_HARD, "response_body"),
    ],
)  # fmt: skip
def test_a_body_is_archived_apart_from_the_rest_of_its_event(env: Envelope, field: str) -> None:
    raw = rows_for(env)[0]
    assert isinstance(raw, EventRow)
    assert raw.body == getattr(env.event, field) != ""
    bodiless = decode(raw.payload)  # what stays once the body ages out
    assert getattr(bodiless.event, field) == ""
    changes: dict[str, Any] = {field: raw.body}
    assert dataclasses.replace(bodiless.event, **changes) == env.event
    assert archived_envelope(raw.payload, "") == bodiless


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda name: envelopes(EVENT_TYPES[name])))
def test_any_event_comes_back_whole_from_the_archive(env: Envelope) -> None:
    raw = rows_for(env)[0]
    assert isinstance(raw, EventRow)
    assert archived_envelope(raw.payload, raw.body) == env
    assert join_body(*split_body(env)) == env
    # A row archived before bodies had their own column: the whole document, no body.
    assert archived_envelope(encode(env).decode(), "") == env


def test_a_body_for_an_event_without_one_is_not_an_archived_event() -> None:
    with pytest.raises(EventDecodeError):
        join_body(RETRY, "stray body")


NON_TASK_TYPES = sorted(name for name, cls in EVENT_TYPES.items() if not issubclass(cls, TaskEvent))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NON_TASK_TYPES).flatmap(lambda name: envelopes(EVENT_TYPES[name])))
def test_other_events_yield_only_the_raw_row(env: Envelope) -> None:
    (raw,) = rows_for(env)
    assert isinstance(raw, EventRow)
    assert (raw.event_id, raw.type, raw.topic, raw.key) == (
        env.event_id,
        env.type,
        env.topic,
        env.key,
    )
    assert decode(raw.payload) == env


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(EVENT_TYPES)).flatmap(lambda name: envelopes(EVENT_TYPES[name])))
def test_rows_are_normalized_for_the_store(env: Envelope) -> None:
    for row in rows_for(env):
        for name in row.__dataclass_fields__:
            value = getattr(row, name)
            if isinstance(value, datetime):
                assert value.tzinfo is UTC, name
            if isinstance(value, int) and not isinstance(value, bool):
                assert -(2**63) <= value < 2**63, name
        assert row.event_id == env.event_id
        assert row.schema_version == env.schema_version


def test_gpu_time_is_never_negative() -> None:
    backwards = completed("T1", at(5), at(2))
    (_, outcome) = rows_for(backwards)
    assert isinstance(outcome, OutcomeRow)
    assert outcome.gpu_us == 0


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2024, 4, 15, 14, 30), datetime(2024, 4, 15, 14, 30, tzinfo=UTC)),
        (
            datetime(2024, 4, 15, 10, 30, tzinfo=timezone(timedelta(hours=-4))),
            datetime(2024, 4, 15, 14, 30, tzinfo=UTC),
        ),
    ],
    ids=["naive is UTC", "offset converted"],
)
def test_utc(moment: datetime, expected: datetime) -> None:
    assert utc(moment) == expected
    assert utc(moment).tzinfo is UTC


@pytest.mark.parametrize(("value", "expected"), [(5, 5), (2**70, 2**63 - 1), (-(2**70), -(2**63))])
def test_int64_clamps(value: int, expected: int) -> None:
    assert int64(value) == expected


def test_table_rows_groups_by_table_and_drops_duplicate_events() -> None:
    batch = [SUB, DIS, DONE, SUB, envelope(SUB.event, T0, event_id=SUB.event_id)]
    grouped = table_rows(batch)
    assert list(grouped) == ["task_submissions", "task_dispatches", "task_outcomes", "events"]
    assert [len(rows) for rows in grouped.values()] == [1, 1, 1, 3]
    assert grouped["task_submissions"][0][:3] == ("T1", SUB.event_id, 1)
