"""The pure folds of the webhooks role: which tasks it keeps and what it owes them, and
each workspace's current salt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events import (
    Envelope,
    Event,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
    WebhookAbandoned,
    WebhookAttempted,
    WebhookDelivered,
    WebhookKind,
    WebhookSecretRotated,
    WorkspaceDeleted,
    WorkspaceRegistered,
)
from services.webhooks.salts import Salts
from services.webhooks.state import Hooks

T0 = datetime(2024, 4, 15, 14, 30, tzinfo=UTC)
WHERE = ("ngpu.tasks", 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def submitted(task_id: str, url: str = "https://h.example/x",
              kinds: tuple[WebhookKind, ...] = ()) -> TaskSubmitted:  # fmt: skip
    return TaskSubmitted(
        task_id=task_id, seq=1, workspace_id="w", userkey="u", btc_address="", mode="async",
        method="schedulingTask", request_url="/", param_url="/", param_port=1, user_ip="",
        request_body="", gpu_type="G", gpu_count=1, timeout_s=1, webhook=url,
        webhook_events=kinds,
    )  # fmt: skip


def dispatched(task_id: str, attempt: int = 1) -> TaskDispatched:
    return TaskDispatched(
        task_id=task_id, workspace_id="w", attempt=attempt, node_id="n", node_ip="h",
        node_address="a", deployment_id="d", host_port=1,
    )  # fmt: skip


def failed(task_id: str, *, retryable: bool) -> TaskFailed:
    return TaskFailed(task_id=task_id, workspace_id="w", attempt=1, node_id="n", code="node_error",
                      reason="down", retryable=retryable)  # fmt: skip


def fold(hooks: Hooks, *timed: tuple[float, Event]) -> None:
    for offset, (seconds, event) in enumerate(timed):
        hooks.apply(Envelope(event, occurred_at=at(seconds)), WHERE, offset)


def test_a_task_without_a_webhook_is_not_kept() -> None:
    hooks = Hooks()
    fold(hooks, (0, submitted("t", url="")), (1, dispatched("t")))
    assert hooks.tasks == {}


def test_start_comes_with_the_first_dispatch_and_completed_with_the_end() -> None:
    hooks = Hooks()
    fold(hooks, (0, submitted("t", kinds=("start", "completed"))), (1, dispatched("t")),
         (2, failed("t", retryable=True)), (3, TaskRetried("t", "w", 2, ("n",), "again")),
         (4, dispatched("t", 2)), (5, failed("t", retryable=False)))  # fmt: skip
    task = hooks.tasks["t"]
    assert set(task.messages) == {"start", "completed"}
    assert (task.messages["start"].event_at, task.messages["start"].due) == (at(1), at(1))
    assert task.messages["completed"].event_at == at(5)
    assert task.ended and task.status.phase == "failed" and not task.done


def test_completed_is_the_default_and_a_task_that_never_ran_owes_no_start() -> None:
    hooks = Hooks()
    fold(hooks, (0, submitted("a")), (1, dispatched("a")))
    assert hooks.tasks["a"].kinds == ("completed",) and hooks.tasks["a"].messages == {}
    fold(hooks, (0, submitted("b", kinds=("start", "completed"))),
         (9, TaskExpired("b", "w", 9.0)))  # fmt: skip
    assert set(hooks.tasks["b"].messages) == {"completed"}


def test_attempts_fold_into_the_schedule_and_settlements_end_it() -> None:
    hooks = Hooks()
    fold(hooks, (0, submitted("t")), (1, failed("t", retryable=False)))
    ids = {"task_id": "t", "workspace_id": "w", "kind": "completed", "message_id": "m"}
    fold(hooks, (2, WebhookAttempted(**ids, attempt=1, status_code=500, latency_ms=1.0,
                                     error="HTTP 500", retry_in_s=5.0)))  # fmt: skip
    message = hooks.tasks["t"].messages["completed"]
    assert (message.attempts, message.due) == (1, at(7))
    fold(hooks, (3, WebhookAttempted(**ids, attempt=2, status_code=0, latency_ms=1.0,
                                     error="refused", retry_in_s=20.0)),
         (1, WebhookAttempted(**ids, attempt=1, status_code=500, latency_ms=1.0,
                              retry_in_s=5.0)))  # fmt: skip
    assert (message.attempts, message.due) == (2, at(23)), "an older attempt changes nothing"
    fold(hooks, (4, WebhookAttempted(**ids, attempt=3, status_code=200, latency_ms=1.0)))
    assert message.due == at(4), "no retry announced and no settlement read: try again"
    fold(hooks, (4, WebhookDelivered(**ids, attempts=3, status_code=200)))
    assert message.settled and message.due is None and hooks.tasks["t"].done


def test_an_abandoned_message_is_settled_too() -> None:
    hooks = Hooks()
    fold(hooks, (0, submitted("t")), (1, TaskExpired("t", "w", 1.0)),
         (2, WebhookAbandoned("t", "w", "completed", "m", 0, "gone")))  # fmt: skip
    assert hooks.tasks["t"].done


def test_folding_a_record_twice_is_folding_it_once() -> None:
    once, twice = Hooks(), Hooks()
    events = [(0, submitted("t", kinds=("start", "completed"))), (1, dispatched("t")),
              (2, failed("t", retryable=False))]  # fmt: skip
    fold(once, *events)
    fold(twice, *events)
    fold(twice, *events)
    assert once == twice


def registered(workspace_id: str, salt: str) -> WorkspaceRegistered:
    return WorkspaceRegistered(workspace_id=workspace_id, name="n", userkey="u", image="i",
                               command=("x",), gpu_type="G", gpu_count=1, ports=(1,),
                               webhook_salt=salt)  # fmt: skip


def test_salts_follow_rotations_and_deletions() -> None:
    salts = Salts()
    for event in (
        registered("w", "s1"),
        registered("v", ""),
        WebhookSecretRotated("w", "s2"),
        registered("w", "s1"),
        WorkspaceDeleted("v"),
        WebhookSecretRotated("v", "s3"),
    ):
        salts.apply(event)  # fmt: skip
    assert salts.current == {"w": "s2", "v": None}
