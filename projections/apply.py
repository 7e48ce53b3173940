"""Pure: the projection rows of one event. No I/O; the writer inserts what this returns.

Every event yields an `EventRow` (the archive); task events also yield their fact row:
`TaskSubmitted` -> `SubmissionRow`, `TaskDispatched` -> `DispatchRow`, a retryable
`TaskFailed` or a `TaskRetried` -> `RequeueRow`, a terminal event -> `OutcomeRow`.
Integers are clamped to Int64 and times normalized to aware UTC (a naive time is taken
as UTC), so any event the codec accepts yields rows the store accepts.

An event's body (`request_body` or `response_body`; no event has both) is archived apart
from the rest of it (`split_body`, `join_body`), so that bodies can age out of the
archive while every other field of the event stays.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from events import (
    Envelope,
    Event,
    EventDecodeError,
    TaskCancelled,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
    encode,
)
from projections.rows import (
    ARCHIVE_LAYOUT,
    DispatchRow,
    EventRow,
    OutcomeKind,
    OutcomeRow,
    RequeueRow,
    Row,
    SubmissionRow,
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_BODY_FIELDS = ("request_body", "response_body")
_BODY_FIELD_OF: dict[type[Event], str | None] = {}

FACT_TYPES: tuple[type[Event], ...] = (
    TaskSubmitted,
    TaskDispatched,
    TaskCompleted,
    TaskFailed,
    TaskRetried,
    TaskCancelled,
    TaskExpired,
)
"""The events that yield a fact row (every other event yields only its raw row)."""


def rows_for(envelope: Envelope) -> tuple[Row, ...]:
    """The rows `envelope` contributes to the projection tables (raw log row first)."""
    return (raw_row(envelope), *fact_rows(envelope))


def raw_row(envelope: Envelope) -> EventRow:
    """The archive's row of `envelope`: its document without the body, and the body."""
    bodiless, body = split_body(envelope)
    return EventRow(
        event_id=envelope.event_id,
        type=envelope.type,
        topic=envelope.topic,
        key=envelope.key,
        occurred_at=utc(envelope.occurred_at),
        schema_version=envelope.schema_version,
        payload=encode(bodiless).decode(),
        body=body,
        layout=ARCHIVE_LAYOUT,
    )


def fact_rows(envelope: Envelope) -> tuple[Row, ...]:
    """The rows `envelope` contributes to the derived tables: none, or its fact row."""
    fact = _task_fact(envelope)
    return () if fact is None else (fact,)


def body_field(event_type: type[Event]) -> str | None:
    """The name of the body field of events of `event_type`, or None when they have
    none."""
    if event_type not in _BODY_FIELD_OF:
        names = {spec.name for spec in dataclasses.fields(event_type)}
        _BODY_FIELD_OF[event_type] = next((n for n in _BODY_FIELDS if n in names), None)
    return _BODY_FIELD_OF[event_type]


def split_body(envelope: Envelope) -> tuple[Envelope, str]:
    """`envelope` with its event's body blank, and that body ("" when it has none)."""
    name = body_field(type(envelope.event))
    body: str = getattr(envelope.event, name) if name is not None else ""
    if name is None or not body:
        return envelope, ""
    return _with_body(envelope, name, ""), body


def join_body(envelope: Envelope, body: str) -> Envelope:
    """The inverse of `split_body`: `envelope` with `body` put back in its event's body
    field. An empty `body` (none, aged out, or still inside the document) changes
    nothing; a body for an event that has no body field raises `EventDecodeError` (the
    row is not one this module wrote)."""
    if not body:
        return envelope
    name = body_field(type(envelope.event))
    if name is None:
        raise EventDecodeError(f"a {envelope.type} has no body field")
    return _with_body(envelope, name, body)


def _with_body(envelope: Envelope, name: str, body: str) -> Envelope:
    changes: dict[str, Any] = {name: body}
    event = dataclasses.replace(envelope.event, **changes)
    return dataclasses.replace(envelope, event=event)  # its id, time and trace kept


def utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def int64(value: int) -> int:
    """`value` clamped to the Int64 range of the columns."""
    return max(_INT64_MIN, min(_INT64_MAX, value))


def _task_fact(envelope: Envelope) -> Row | None:
    event = envelope.event
    if isinstance(event, TaskSubmitted):
        return _submission(envelope, event)
    if isinstance(event, TaskDispatched):
        return _dispatch(envelope, event)
    if isinstance(event, TaskCompleted):
        return _completion(envelope, event)
    if isinstance(event, TaskFailed):
        if event.retryable:
            return _requeue_on_failure(envelope, event)
        return _failure(envelope, event)
    if isinstance(event, TaskRetried):
        return _retry(envelope, event)
    if isinstance(event, TaskCancelled):
        reason = event.reason
        return _end(envelope, event.workspace_id, "cancelled", code="cancelled", reason=reason)
    if isinstance(event, TaskExpired):
        reason = f"no capacity within the task's TTL (waited {event.waited_s:.1f} s)"
        return _end(envelope, event.workspace_id, "expired", code="expired", reason=reason)
    return None


def _submission(envelope: Envelope, event: TaskSubmitted) -> SubmissionRow:
    return SubmissionRow(
        task_id=event.task_id,
        event_id=envelope.event_id,
        schema_version=envelope.schema_version,
        submitted_at=utc(envelope.occurred_at),
        workspace_id=event.workspace_id,
        seq=int64(event.seq),
        userkey=event.userkey,
        btc_address=event.btc_address,
        mode=event.mode,
        method=event.method,
        request_url=event.request_url,
        param_url=event.param_url,
        param_port=int64(event.param_port),
        user_ip=event.user_ip,
        request_body=event.request_body,
        body_encoding=event.body_encoding,
        content_type=event.content_type,
        gpu_type=event.gpu_type,
        gpu_count=int64(event.gpu_count),
        timeout_s=event.timeout_s,
        priority=int64(event.priority),
        ttl_s=event.ttl_s,
    )


def _dispatch(envelope: Envelope, event: TaskDispatched) -> DispatchRow:
    return DispatchRow(
        task_id=event.task_id,
        event_id=envelope.event_id,
        schema_version=envelope.schema_version,
        dispatched_at=utc(envelope.occurred_at),
        workspace_id=event.workspace_id,
        attempt=int64(event.attempt),
        node_id=event.node_id,
        node_ip=event.node_ip,
        node_address=event.node_address,
        deployment_id=event.deployment_id,
        host_port=int64(event.host_port),
    )


def _requeue_on_failure(envelope: Envelope, event: TaskFailed) -> RequeueRow:
    return RequeueRow(
        task_id=event.task_id,
        event_id=envelope.event_id,
        schema_version=envelope.schema_version,
        requeued_at=utc(envelope.occurred_at),
        workspace_id=event.workspace_id,
        kind="failed",
        attempt=int64(event.attempt),
        node_id=event.node_id,
        code=event.code,
        reason=event.reason,
        excluded_node_ids=(),
    )


def _retry(envelope: Envelope, event: TaskRetried) -> RequeueRow:
    return RequeueRow(
        task_id=event.task_id,
        event_id=envelope.event_id,
        schema_version=envelope.schema_version,
        requeued_at=utc(envelope.occurred_at),
        workspace_id=event.workspace_id,
        kind="retried",
        attempt=int64(event.attempt),
        node_id="",
        code="",
        reason=event.reason,
        excluded_node_ids=tuple(event.excluded_node_ids),
    )


def _completion(envelope: Envelope, event: TaskCompleted) -> OutcomeRow:
    started, finished = utc(event.started_at), utc(event.finished_at)
    work = finished - started
    work_us = max(0, (work.days * 86_400 + work.seconds) * 1_000_000 + work.microseconds)
    return dataclasses.replace(
        _end(envelope, event.workspace_id, "completed", code="", reason=""),
        attempt=int64(event.attempt),
        node_id=event.node_id,
        node_ip=event.node_ip,
        node_address=event.node_address,
        status_code=int64(event.status_code),
        response_body=event.response_body,
        body_encoding=event.body_encoding,
        content_type=event.content_type,
        started_at=started,
        finished_at=finished,
        ended_at=finished,
        gpu_type=event.gpu_type,
        gpu_count=int64(event.gpu_count),
        gpu_us=int64(work_us * max(0, event.gpu_count)),
        revision=int64(event.revision),
    )


def _failure(envelope: Envelope, event: TaskFailed) -> OutcomeRow:
    return dataclasses.replace(
        _end(envelope, event.workspace_id, "failed", code=event.code, reason=event.reason),
        attempt=int64(event.attempt),
        node_id=event.node_id,
        status_code=int64(event.status_code),
        response_body=event.response_body,
    )


def _end(
    envelope: Envelope,
    workspace_id: str,
    kind: OutcomeKind,
    *,
    code: str,
    reason: str,
) -> OutcomeRow:
    at = utc(envelope.occurred_at)
    return OutcomeRow(
        task_id=envelope.key,
        event_id=envelope.event_id,
        schema_version=envelope.schema_version,
        occurred_at=at,
        workspace_id=workspace_id,
        kind=kind,
        attempt=0,
        node_id="",
        node_ip="",
        node_address="",
        status_code=0,
        response_body="",
        body_encoding="utf-8",
        content_type="",
        started_at=None,
        finished_at=None,
        ended_at=at,
        gpu_type="",
        gpu_count=0,
        gpu_us=0,
        code=code,
        reason=reason,
    )
