"""Pure: the projection rows of one event. No I/O; the writer inserts what this returns.

Every event yields an `EventRow` (the raw log); task events also yield their fact row:
`TaskSubmitted` -> `SubmissionRow`, `TaskDispatched` -> `DispatchRow`, a retryable
`TaskFailed` or a `TaskRetried` -> `RequeueRow`, a terminal event -> `OutcomeRow`.
Integers are clamped to Int64 and times normalized to aware UTC (a naive time is taken
as UTC), so any event the codec accepts yields rows the store accepts.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from events import (
    Envelope,
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
    DispatchRow,
    EventRow,
    OutcomeKind,
    OutcomeRow,
    RequeueRow,
    Row,
    SubmissionRow,
)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def rows_for(envelope: Envelope) -> tuple[Row, ...]:
    """The rows `envelope` contributes to the projection tables (raw log row first)."""
    raw = EventRow(
        event_id=envelope.event_id,
        type=envelope.type,
        topic=envelope.topic,
        key=envelope.key,
        occurred_at=utc(envelope.occurred_at),
        schema_version=envelope.schema_version,
        payload=encode(envelope).decode(),
    )
    fact = _task_fact(envelope)
    return (raw,) if fact is None else (raw, fact)


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
