"""Task histories for the projection tests: envelopes with chosen times and ids."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from events import (
    Envelope,
    Event,
    TaskCancelled,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
)
from projections import create_schema

T0 = datetime(2024, 4, 15, 14, 30, 9, 891041, tzinfo=UTC)
"""A request time; histories are laid out relative to it."""
EVER = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC))
"""The contract's default list range."""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def envelope(event: Event, when: datetime, event_id: str | None = None) -> Envelope:
    return Envelope(event, event_id=event_id or uuid.uuid4().hex, occurred_at=when)


def submitted(
    task_id: str, *, workspace: str = "ws-a", seq: int = 1, when: datetime = T0, **extra: Any
) -> Envelope:
    fields: dict[str, Any] = {
        "task_id": task_id,
        "seq": seq,
        "workspace_id": workspace,
        "userkey": "ts-22a51e64",
        "btc_address": "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus",
        "mode": "async",
        "method": "schedulingTask",
        "request_url": "/user/schedulingTask?paramUrl=create",
        "param_url": "create",
        "param_port": 8080,
        "user_ip": "94.74.66.215",
        "request_body": '{"gz": true}',
        "gpu_type": "A100",
        "gpu_count": 2,
        "timeout_s": 60.0,
    }
    fields.update(extra)
    return envelope(TaskSubmitted(**fields), when)


def dispatched(
    task_id: str,
    when: datetime,
    *,
    attempt: int = 1,
    node: str = "n1",
    workspace: str = "ws-a",
) -> Envelope:
    event = TaskDispatched(
        task_id=task_id,
        workspace_id=workspace,
        attempt=attempt,
        node_id=node,
        node_ip=f"10.0.0.{node[-1]}",
        node_address=f"0x{node}",
        deployment_id=f"dep-{node}",
        host_port=31000,
    )
    return envelope(event, when)


def completed(
    task_id: str,
    started: datetime,
    finished: datetime,
    *,
    attempt: int = 1,
    node: str = "n1",
    workspace: str = "ws-a",
    gpu_type: str = "A100",
    gpu_count: int = 2,
    body: str = '{"task_id": "37a41eba"}',
    when: datetime | None = None,
    event_id: str | None = None,
    revision: int = 0,
) -> Envelope:
    event = TaskCompleted(
        task_id=task_id,
        workspace_id=workspace,
        attempt=attempt,
        node_id=node,
        node_ip=f"10.0.0.{node[-1]}",
        node_address=f"0x{node}",
        status_code=200,
        response_body=body,
        started_at=started,
        finished_at=finished,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        revision=revision,
    )
    return envelope(event, when or finished, event_id)


def failed(
    task_id: str,
    when: datetime,
    *,
    retryable: bool,
    attempt: int = 1,
    node: str = "n1",
    workspace: str = "ws-a",
    event_id: str | None = None,
) -> Envelope:
    event = TaskFailed(
        task_id=task_id,
        workspace_id=workspace,
        attempt=attempt,
        node_id=node,
        code="node_error",
        reason="container answered 500",
        retryable=retryable,
        status_code=500,
        response_body="boom",
    )
    return envelope(event, when, event_id)


def retried(task_id: str, when: datetime, *, attempt: int = 2, workspace: str = "ws-a") -> Envelope:
    event = TaskRetried(
        task_id=task_id,
        workspace_id=workspace,
        attempt=attempt,
        excluded_node_ids=("n1",),
        reason="node_error",
    )
    return envelope(event, when)


def cancelled(
    task_id: str, when: datetime, *, workspace: str = "ws-a", event_id: str | None = None
) -> Envelope:
    return envelope(TaskCancelled(task_id, workspace, "caller gave up"), when, event_id)


def expired(
    task_id: str, when: datetime, *, workspace: str = "ws-a", event_id: str | None = None
) -> Envelope:
    return envelope(TaskExpired(task_id, workspace, 3600.0), when, event_id)


def completed_history(
    task_id: str, *, workspace: str = "ws-a", start: datetime = T0, node: str = "n1", seq: int = 1
) -> list[Envelope]:
    """Submitted, dispatched 0.2 s later, ran 1.5 s on `node` with 2 GPUs, answered."""
    return [
        submitted(task_id, workspace=workspace, seq=seq, when=start),
        dispatched(task_id, start + timedelta(seconds=0.2), node=node, workspace=workspace),
        completed(
            task_id,
            start + timedelta(seconds=0.3),
            start + timedelta(seconds=1.8),
            node=node,
            workspace=workspace,
        ),
    ]


def mixed_history() -> list[Envelope]:
    """Six tasks in two workspaces: completed, waiting for a retry, cancelled before a
    late completion, expired."""
    return [
        *completed_history("T1", workspace="ws-a", node="n1", seq=1),
        *completed_history("T2", workspace="ws-b", node="n2", seq=2, start=at(30)),
        *completed_history("T3", workspace="ws-a", node="n2", seq=3, start=at(86_400)),
        submitted("T4", workspace="ws-a", seq=4, when=at(40)),
        dispatched("T4", at(41)),
        failed("T4", at(42), retryable=True),
        retried("T4", at(43)),
        submitted("T5", workspace="ws-b", seq=5, when=at(50)),
        cancelled("T5", at(51), workspace="ws-b"),
        completed("T5", at(50.5), at(52), workspace="ws-b"),
        submitted("T6", workspace="ws-a", seq=6, when=at(60)),
        expired("T6", at(3660)),
    ]


TASKS = [f"T{i}" for i in range(1, 7)]
WORKSPACES = ["ws-a", "ws-b"]


def drop_database(client: Client, name: str) -> None:
    client.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@contextlib.contextmanager
def fresh_database(client: Client) -> Iterator[str]:
    """A database with the projection tables for the duration of the block (for
    hypothesis examples, which cannot use function-scoped fixtures)."""
    name = f"h_{uuid.uuid4().hex[:12]}"
    create_schema(client, name)
    try:
        yield name
    finally:
        drop_database(client, name)
