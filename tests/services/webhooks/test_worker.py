"""The webhooks role on a real bus (embedded and Kafka) against a real receiver that checks
signatures with the `standardwebhooks` library: messages, retries, their events, and a
restart in the middle of the retries."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from events import (
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskSubmitted,
    WebhookKind,
    WebhookSecretRotated,
    WorkspaceDeleted,
    WorkspaceRegistered,
    topics,
)
from services.bus import Bus, EmbeddedBus, KafkaBus, decode_record, publish_events
from services.hosts import HostPolicy, parse_allow
from services.webhooks.retry import RetryPolicy
from services.webhooks.secrets import workspace_secret
from services.webhooks.worker import WebhookWorker
from tests.support.webhooks import Receiver

KEY = b"k" * 32
WORKSPACE = "10000000000000000001"
SALT = "first-salt"
LOOPBACK = HostPolicy(parse_allow(["127.0.0.1/32"]))
QUICK = RetryPolicy(base_s=0.2, max_s=0.5, window_s=60)
GUARD_S = 60


@pytest.fixture(params=["embedded", "kafka"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    started: Bus
    if request.param == "embedded":
        started = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2, poll_interval_s=0.05)
    else:
        broker = request.getfixturevalue("kafka_broker")
        started = KafkaBus(broker.bootstrap, partitions=2, namespace=f"{uuid.uuid4().hex}.")
    await started.start()
    yield started
    await started.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(secret=workspace_secret(KEY, WORKSPACE, SALT)).start()
    yield running
    running.stop()


@contextlib.asynccontextmanager
async def worker(bus: Bus, retry: RetryPolicy = QUICK) -> AsyncIterator[WebhookWorker]:
    role = WebhookWorker(bus, KEY, hosts=LOOPBACK, retry=retry)
    running = asyncio.create_task(role.run())
    try:
        yield role
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def _workspace() -> WorkspaceRegistered:
    return WorkspaceRegistered(
        workspace_id=WORKSPACE, name="w", userkey="ts-u", image="i", command=("x",),
        gpu_type="RTX4090", gpu_count=1, ports=(8080,), webhook_salt=SALT,
    )  # fmt: skip


def _submitted(task_id: str, url: str, kinds: tuple[WebhookKind, ...] = ()) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=task_id, seq=1, workspace_id=WORKSPACE, userkey="ts-u", btc_address="",
        mode="async", method="schedulingTask", request_url="/user/schedulingTask",
        param_url="/x", param_port=8080, user_ip="127.0.0.1", request_body="{}",
        gpu_type="RTX4090", gpu_count=1, timeout_s=30, webhook=url, webhook_events=kinds,
    )  # fmt: skip


def _dispatched(task_id: str) -> TaskDispatched:
    return TaskDispatched(
        task_id=task_id, workspace_id=WORKSPACE, attempt=1, node_id="n", node_ip="127.0.0.1",
        node_address="0x" + "a" * 40, deployment_id="d", host_port=1,
    )  # fmt: skip


def _completed(task_id: str, body: str = '{"image": "done"}') -> TaskCompleted:
    now = datetime.now(UTC)
    return TaskCompleted(
        task_id=task_id, workspace_id=WORKSPACE, attempt=1, node_id="n", node_ip="127.0.0.1",
        node_address="0x" + "a" * 40, status_code=200, response_body=body, started_at=now,
        finished_at=now, gpu_type="RTX4090", gpu_count=1,
    )  # fmt: skip


async def _history(bus: Bus, task_id: str) -> list[Any]:
    """The task's events in the log, in order."""
    found = []
    async with bus.consumer([topics.TASKS], group=None, start="earliest") as reader:
        ends = await reader.ends()
        left = {p: end for p, end in ends.items() if end > 0}
        while left:
            for record in await reader.fetch(1000, timeout_s=1.0):
                if record.key == task_id:
                    found.append(decode_record(record).event)
                where = (record.topic, record.partition)
                if record.offset + 1 >= left.get(where, 0):
                    left.pop(where, None)
    return found


async def _until(probe: Any, what: str) -> Any:
    for _ in range(GUARD_S * 20):
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _recorded(bus: Bus, task_id: str, kind: str, count: int = 1) -> list[Any]:
    """The task's events once `count` events of type `kind` are among them."""

    async def probe() -> list[Any]:
        events = await _history(bus, task_id)
        return events if _types(events).count(kind) >= count else []

    found: list[Any] = await _until(probe, f"{count} {kind} of {task_id}")
    return found


def _types(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events if type(e).__name__.startswith("Webhook")]


async def test_start_and_completed_are_signed_and_carry_the_query_task_answer(
    bus: Bus, receiver: Receiver
) -> None:
    await publish_events(bus, [_workspace(), _submitted("t1", receiver.url(),
                                                       ("start", "completed"))])  # fmt: skip
    async with worker(bus):
        await publish_events(bus, [_dispatched("t1")])
        await asyncio.to_thread(receiver.wait, lambda got: len(got) == 1)
        await publish_events(bus, [_completed("t1")])
        got = await asyncio.to_thread(receiver.wait, lambda got: len(got) == 2)
    start, done = got
    assert start.verified and done.verified
    assert start.payload["type"] == "task.start"
    assert start.payload["data"] == {"result_code": 100, "msg": "the task is running",
                                     "taskID": "t1", "data": ""}  # fmt: skip
    assert done.payload["type"] == "task.completed"
    assert done.payload["data"] == {"result_code": 200, "msg": "success", "taskID": "t1",
                                    "data": '{"image": "done"}'}  # fmt: skip
    assert start.headers["webhook-id"] == "msg_t1_start"
    assert done.headers["webhook-id"] == "msg_t1_completed"
    assert start.headers["content-type"] == "application/json"
    history = await _recorded(bus, "t1", "WebhookDelivered", 2)
    webhook = [e for e in history if type(e).__name__.startswith("Webhook")]
    assert _types(webhook) == ["WebhookAttempted", "WebhookDelivered"] * 2
    assert [(e.kind, e.status_code) for e in webhook] == [("start", 200)] * 2 + [
        ("completed", 200)
    ] * 2


async def test_only_completed_by_default_and_none_without_a_webhook(
    bus: Bus, receiver: Receiver
) -> None:
    await publish_events(bus, [_workspace(), _submitted("plain", ""),
                               _submitted("t2", receiver.url())])  # fmt: skip
    async with worker(bus):
        await publish_events(bus, [_dispatched("plain"), _completed("plain"),
                                   _dispatched("t2"), _completed("t2")])  # fmt: skip
        got = await asyncio.to_thread(receiver.wait, lambda got: len(got) == 1)
        await asyncio.sleep(0.5)
    assert [d.type for d in receiver.at("/hook")] == ["task.completed"]
    assert got[0].payload["data"]["taskID"] == "t2"


async def test_a_failing_receiver_is_retried_until_it_answers(bus: Bus, receiver: Receiver) -> None:
    receiver.answers["/hook"] = [500, 500]
    await publish_events(bus, [_workspace(), _submitted("t3", receiver.url())])
    async with worker(bus):
        await publish_events(bus, [_dispatched("t3"), _completed("t3")])
        got = await asyncio.to_thread(receiver.wait, lambda got: len(got) == 3)

        history = await _recorded(bus, "t3", "WebhookDelivered")
    assert [d.status for d in got] == [500, 500, 200]
    assert all(d.verified for d in got)
    assert len({d.headers["webhook-id"] for d in got}) == 1, "one message, three attempts"
    assert len({d.body for d in got}) == 1, "every attempt sends the same payload"
    attempts = [e for e in history if type(e).__name__ == "WebhookAttempted"]
    assert [(a.attempt, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert [a.error for a in attempts] == ["HTTP 500", "HTTP 500", ""]
    assert attempts[0].retry_in_s > 0 and attempts[1].retry_in_s > 0
    assert attempts[2].retry_in_s == 0
    assert all(a.latency_ms >= 0 for a in attempts)


async def test_a_restart_in_the_middle_of_the_retries_goes_on_from_the_log(
    bus: Bus, receiver: Receiver
) -> None:
    receiver.failing.add("/hook")
    slow = RetryPolicy(base_s=0.5, max_s=1.0, window_s=120)
    await publish_events(bus, [_workspace(), _submitted("t4", receiver.url())])
    async with worker(bus, slow):
        await publish_events(bus, [_dispatched("t4"), _completed("t4")])
        await asyncio.to_thread(receiver.wait, lambda got: len(got) >= 2)
    before = len(receiver.at("/hook"))
    receiver.failing.clear()
    async with worker(bus, slow):  # a new process: it knows only the log
        got = await asyncio.to_thread(receiver.wait, lambda got: got[-1].status == 200)

        history = await _recorded(bus, "t4", "WebhookDelivered")
    assert len(got) == before + 1, "one more attempt after the restart, then delivered"
    attempts = [e.attempt for e in history if type(e).__name__ == "WebhookAttempted"]
    assert attempts == list(range(1, len(attempts) + 1)), "numbering goes on where it was"
    assert _types(history)[-1] == "WebhookDelivered"


async def test_what_was_delivered_is_not_sent_again_after_a_restart(
    bus: Bus, receiver: Receiver
) -> None:
    await publish_events(bus, [_workspace(), _submitted("t5", receiver.url())])
    async with worker(bus):
        await publish_events(bus, [_dispatched("t5"), _completed("t5")])
        await asyncio.to_thread(receiver.wait, lambda got: len(got) == 1)

        await _recorded(bus, "t5", "WebhookDelivered")
    async with worker(bus) as again:
        await _until(lambda: again.ready.caught_up, "the restarted role to catch up")
        await asyncio.sleep(1.0)
    assert len(receiver.at("/hook")) == 1


async def test_a_message_past_its_window_is_abandoned(bus: Bus, receiver: Receiver) -> None:
    receiver.failing.add("/hook")
    short = RetryPolicy(base_s=0.2, max_s=0.3, window_s=1.0)
    await publish_events(bus, [_workspace(), _submitted("t6", receiver.url())])
    async with worker(bus, short):
        await publish_events(bus, [_dispatched("t6"), _completed("t6")])

        history = await _recorded(bus, "t6", "WebhookAbandoned")
    (gave_up,) = [e for e in history if type(e).__name__ == "WebhookAbandoned"]
    assert gave_up.attempts == len(receiver.at("/hook")) >= 2
    assert "within 1s" in gave_up.reason and "HTTP 500" in gave_up.reason


async def test_a_rotated_secret_signs_what_follows_and_a_deleted_workspace_gets_nothing(
    bus: Bus, receiver: Receiver
) -> None:
    await publish_events(bus, [_workspace(), WebhookSecretRotated(WORKSPACE, "second-salt"),
                               _submitted("t7", receiver.url())])  # fmt: skip
    async with worker(bus):
        await publish_events(bus, [_dispatched("t7"), _completed("t7")])
        (got,) = await asyncio.to_thread(receiver.wait, lambda got: len(got) == 1)
        assert not got.verified, "the first secret no longer signs"
        receiver.secret = workspace_secret(KEY, WORKSPACE, "second-salt")
        assert receiver.verify(got.body, got.headers)[0], "the rotated one does"
        await publish_events(bus, [_submitted("t8", receiver.url()), WorkspaceDeleted(WORKSPACE),
                                   TaskExpired("t8", WORKSPACE, 1.0)])  # fmt: skip

        history = await _recorded(bus, "t8", "WebhookAbandoned")
    assert len(receiver.at("/hook")) == 1
    assert history[-1].reason == "the workspace was deleted"


async def test_a_refused_target_is_abandoned_without_a_request(
    bus: Bus, receiver: Receiver
) -> None:
    # localhost resolves to 127.0.0.1, allowed; ::1 and 127.0.0.2 are loopback, refused.
    await publish_events(bus, [_workspace(), _submitted("t9", receiver.url(host="127.0.0.2"))])
    async with worker(bus):
        await publish_events(bus, [_dispatched("t9"), _completed("t9")])

        history = await _recorded(bus, "t9", "WebhookAbandoned")
    assert receiver.deliveries == []
    assert "127.0.0.2 is loopback" in history[-1].reason
