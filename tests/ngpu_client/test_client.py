"""The SDK against a live `ngpu up --demo` (real control plane, node agent and sample
app): every call of the sync client, the async one's, the errors each result_code
raises, and webhook signatures (a real delivery, and one signed by `standardwebhooks`).
Every wait is a hang guard."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from ngpu_client import (
    AsyncClient,
    Cancelled,
    Client,
    Conflict,
    NodeError,
    NotFound,
    Progress,
    Unauthorized,
    Unprocessable,
    WaitTimeout,
    WebhookSignatureError,
    verify_webhook,
)
from services.demo import demo_workspace
from tests.e2e.cluster import wait_for
from tests.support.gateway import Gateway, gateway
from tests.support.webhooks import Receiver

__all__ = ["gateway"]  # the module's live gateway fixture
GUARD_S = 60


@pytest.fixture
def ngpu(gateway: Gateway) -> Iterator[Client]:
    with Client(gateway.url, workspace_id=gateway.workspace_id,
                admin_token=gateway.admin_token) as client:  # fmt: skip
        yield client


def test_run_answers_the_containers_data_decoded(ngpu: Client) -> None:
    answer = ngpu.run("img2img", {"prompt": "a cat"})
    assert answer.done and answer.result_code == 200 and answer.task_id
    assert isinstance(answer.data, dict)
    assert answer.data["task_id"] == answer.task_id  # the sample app echoes X-NGPU-Task-ID
    assert json.loads(answer.text) == answer.data
    plain = ngpu.run("echo", "just text")
    assert plain.data == "just text"


def test_submit_then_wait_reports_progress(ngpu: Client) -> None:
    task = ngpu.submit("hold", {"ms": 1500}, priority=0, ttl_s=60)
    seen: list[Progress] = []
    done = ngpu.wait(task.task_id, timeout=GUARD_S, poll_initial=0.1, on_progress=seen.append)
    assert done.done and done.task_id == task.task_id
    assert seen and all(p.task_id == task.task_id for p in seen)
    assert {p.state for p in seen} <= {"queued", "running"}
    assert [p.polls for p in seen] == list(range(1, len(seen) + 1))


def test_wait_gives_up_after_its_timeout(ngpu: Client) -> None:
    task = ngpu.submit("hold", {"ms": 5000})
    with pytest.raises(WaitTimeout) as raised:
        ngpu.wait(task.task_id, timeout=0.5, poll_initial=0.1)
    assert raised.value.task_id == task.task_id
    ngpu.cancel(task.task_id)


def test_list_iterates_every_page_in_submission_order(ngpu: Client) -> None:
    submitted = [ngpu.submit("echo", {"n": n}).task_id for n in range(5)]
    today = datetime.now(UTC).date()
    everything = list(ngpu.list(today, today, page_size=1000))
    assert everything[-5:] == submitted
    assert list(ngpu.list(today, today, page_size=2)) == everything
    first = ngpu.list_page(today, today, limit=2)
    assert len(first.task_ids) == 2 and first.cursor == first.task_ids[-1]
    assert list(ngpu.list(end="2024-01-01")) == []


def test_cancel_then_the_task_answers_cancelled(ngpu: Client) -> None:
    task = ngpu.submit("hold", {"ms": 60000})
    cancelled = ngpu.cancel(task.task_id)
    assert cancelled.cancelled and cancelled.task_id == task.task_id
    with pytest.raises(Cancelled) as raised:
        ngpu.get(task.task_id)
    assert raised.value.result_code == 410 and raised.value.task_id == task.task_id
    with pytest.raises(Conflict) as again:
        ngpu.cancel(task.task_id)
    assert again.value.state == 5


def test_detail_and_history_of_a_completed_task(ngpu: Client) -> None:
    answer = ngpu.run("img2img", {"prompt": "history"})
    info = ngpu.detail(answer.task_id)
    assert info.taskid == answer.task_id and info.state_name == "completed"
    assert info.workspaceid == ngpu.config.workspace_id
    assert info.requrl and info.requesttime and info.gpu_duration >= 1
    assert info.response_data == answer.data
    assert len(info.raw) == 20
    history = ngpu.history(answer.task_id)
    assert history.state == "completed"
    types = [e.type for e in history.events]
    assert types[0] == "TaskSubmitted" and "TaskCompleted" in types
    assert next(e for e in history.events if e.type == "TaskCompleted").fields["status_code"] == 200


def test_stream_yields_the_containers_body(ngpu: Client) -> None:
    body = b"".join(ngpu.stream("stream", {"n": 3, "gap_ms": 20}))
    assert body.count(b"data: ") == 3


def test_each_result_code_raises_its_exception(ngpu: Client, gateway: Gateway) -> None:
    with pytest.raises(NotFound) as unknown:
        ngpu.get("no-such-task")
    assert unknown.value.result_code == 404 and "taskID" in unknown.value.msg
    with pytest.raises(NotFound):
        ngpu.history("no-such-task")
    stranger = Client(gateway.url, workspace_id="00000000000000000000")
    with stranger, pytest.raises(Unauthorized):
        stranger.list_page()
    key = f"key-{uuid.uuid4().hex}"
    first = ngpu.submit("echo", {"a": 1}, idempotency_key=key)
    assert ngpu.submit("echo", {"a": 1}, idempotency_key=key).task_id == first.task_id
    with pytest.raises(Unprocessable) as reused:
        ngpu.submit("echo", {"a": 2}, idempotency_key=key)
    assert first.task_id in reused.value.msg
    with pytest.raises(NodeError) as failed:
        ngpu.run("fail", {})
    assert failed.value.task_id and "failing on purpose" in str(failed.value.data)


async def test_the_async_client_has_the_same_calls(gateway: Gateway) -> None:
    async with AsyncClient(gateway.url, workspace_id=gateway.workspace_id) as ngpu:
        answer = await ngpu.run("img2img", {"prompt": "async"})
        assert answer.done and isinstance(answer.data, dict)
        task = await ngpu.submit("hold", {"ms": 300})
        seen: list[Progress] = []
        done = await ngpu.wait(task.task_id, GUARD_S, poll_initial=0.05, on_progress=seen.append)
        assert done.done and seen
        listed = [task_id async for task_id in ngpu.list(page_size=2)]
        assert answer.task_id in listed and task.task_id in listed
        assert (await ngpu.detail(task.task_id)).taskid == task.task_id
        chunks = [chunk async for chunk in ngpu.stream("stream", {"n": 2, "gap_ms": 10})]
        assert b"".join(chunks).count(b"data: ") == 2
        with pytest.raises(NotFound):
            await ngpu.get("no-such-task")


def test_workspaces_and_nodes_through_the_admin_calls(ngpu: Client, gateway: Gateway) -> None:
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    spec = {**demo_workspace(), "name": name, "replicas": {"min": 0, "max": 1}}
    created = ngpu.create_workspace(spec)
    assert created.name == name and created.webhook_secret
    assert created.webhook_secret.startswith("whsec_")
    assert ngpu.get_workspace(created.workspace_id).webhook_secret is None
    names = [ws.name for ws in ngpu.list_workspaces(page_size=1)]
    assert name in names and names == sorted(names) and len(names) >= 2
    assert [ws.name for ws in ngpu.list_workspaces(name=name)] == [name]
    updated = ngpu.update_workspace(created.workspace_id, {"timeout_s": 30})
    assert updated.timeout_s == 30
    nodes = ngpu.list_nodes()
    assert any(d.workspace_id == gateway.workspace_id and d.state == "ready"
               for n in nodes for d in n.deployments)  # fmt: skip
    assert ngpu.workspace_logs(gateway.workspace_id, tail=5)

    # A message signed by standardwebhooks with the secret answered at the creation.
    body = json.dumps({"type": "task.completed", "timestamp": "2026-01-01T00:00:00Z",
                       "data": {"result_code": 200, "msg": "success", "taskID": "t-1",
                                "data": '{"ok": true}'}})  # fmt: skip
    now = datetime.now(UTC)
    headers = {"webhook-id": "msg_t-1_completed", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(created.webhook_secret).sign("msg_t-1_completed",
                                                                         now, body)}  # fmt: skip
    message = verify_webhook(body.encode(), headers, created.webhook_secret)
    assert message.type == "task.completed" and message.status.data == {"ok": True}
    with pytest.raises(WebhookSignatureError):
        verify_webhook(body.replace("t-1", "t-2"), headers, created.webhook_secret)
    rotated = ngpu.rotate_webhook_secret(created.workspace_id)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(body, headers, rotated)

    ngpu.delete_workspace(created.workspace_id)
    with pytest.raises(NotFound) as gone:
        ngpu.get_workspace(created.workspace_id)
    assert gone.value.field == "workspace_id"


def test_a_delivered_webhook_verifies(ngpu: Client, gateway: Gateway) -> None:
    receiver = Receiver().start()
    try:
        secret = receiver.secret = ngpu.rotate_webhook_secret(gateway.workspace_id)
        task = ngpu.submit("img2img", {"prompt": "hook"}, webhook=receiver.url("/sdk"))
        delivery = wait_for(lambda: next(iter(receiver.deliveries), None), GUARD_S, "a webhook")
        message = verify_webhook(delivery.body, delivery.headers, secret)
        assert message.type == "task.completed" and message.status.task_id == task.task_id
        assert message.status.done and isinstance(message.status.data, dict)
        assert message.id == f"msg_{task.task_id}_completed"
    finally:
        receiver.stop()
