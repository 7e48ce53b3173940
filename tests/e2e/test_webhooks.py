"""Signed webhooks end to end, on the embedded log (`ngpu up`) and on Kafka (the webhooks
role in an `ngpu serve --roles webhooks` process of its own): real node agents and the
sample app, and a receiver on 127.0.0.1 (allowed by NGPU_WEBHOOK_HOST_ALLOW) that checks
every signature with the `standardwebhooks` library, as a customer's would. Retries are
fast here (NGPU_WEBHOOK_RETRY_*); every wait is a hang guard."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, wait_for
from tests.support.webhooks import Receiver

GUARD_S = 90
FAST_RETRIES = {
    "NGPU_WEBHOOK_HOST_ALLOW": '["127.0.0.1/32"]',
    "NGPU_WEBHOOK_RETRY_BASE_S": "0.3",
    "NGPU_WEBHOOK_RETRY_MAX_S": "1",
    "NGPU_WEBHOOK_RETRY_WINDOW_S": "300",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def demo(tmp_path: Path, kafka_bootstrap: str | None, receiver: Receiver) -> Iterator[
    tuple[Cluster, dict[str, str]]
]:  # fmt: skip
    """The demo workspace, ready, and its bearer; the receiver holds its webhook secret
    (a rotation's: `ngpu up --demo` made the workspace, so its first one was not seen)."""
    cluster = Cluster(tmp_path, cluster_env(kafka_bootstrap, **FAST_RETRIES))
    try:
        workspace_id = cluster.start_demo()
        rotated = httpx.post(f"{cluster.url}/v1/workspaces/{workspace_id}/webhook-secret",
                             headers=cluster.admin(), timeout=30)  # fmt: skip
        assert rotated.status_code == 200, rotated.text
        receiver.secret = rotated.json()["webhook_secret"]
        yield cluster, {"Authorization": f"Bearer {workspace_id}"}
    finally:
        cluster.stop()


def _submit(cluster: Cluster, auth: dict[str, str], **query: str) -> httpx.Response:
    return httpx.post(f"{cluster.url}/user/schedulingTask",
                      params={"paramUrl": "echo", **query}, json={"data": {"n": 1}},
                      headers=auth, timeout=30)  # fmt: skip


def _webhook_events(cluster: Cluster, task_id: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events() if e["key"] == task_id and e["type"].startswith("Webhook")]


def _recorded(cluster: Cluster, task_id: str, kind: str) -> list[dict[str, Any]]:
    return wait_for(
        lambda: (found := _webhook_events(cluster, task_id))
        and any(e["type"] == kind for e in found)
        and found,
        GUARD_S, f"{kind} of {task_id} in the log",
    )  # fmt: skip


def test_signed_start_and_completed_retried_until_answered(
    demo: tuple[Cluster, dict[str, str]], receiver: Receiver
) -> None:
    cluster, auth = demo
    receiver.answers["/retried"] = [500, 500]
    both = _submit(cluster, auth, webhook=receiver.url("/both"), webhook_events="start,completed")
    retried = _submit(cluster, auth, webhook=receiver.url("/retried"))
    assert both.status_code == retried.status_code == 202, (both.text, retried.text)
    assert set(both.json()) == {"result_code", "msg", "taskID"}, "the contract's answer"

    got = receiver.wait(lambda got: len(got) == 2, "/both", GUARD_S)
    assert all(d.verified for d in got), "every message verifies with the library"
    assert sorted(d.type for d in got) == ["task.completed", "task.start"]
    task_id = both.json()["taskID"]
    start = next(d for d in got if d.type == "task.start")
    done = next(d for d in got if d.type == "task.completed")
    assert start.payload["data"] == {"result_code": 100, "msg": "the task is running",
                                     "taskID": task_id, "data": ""}  # fmt: skip
    answer = httpx.get(f"{cluster.url}/user/queryTask", params={"taskID": task_id},
                       headers=auth, timeout=30).json()  # fmt: skip
    assert done.payload["data"] == answer, "the same fields as queryTask's answer"
    assert answer["result_code"] == 200 and json.loads(answer["data"]) == {"n": 1}

    tries = receiver.wait(lambda got: len(got) == 3, "/retried", GUARD_S)
    assert [d.status for d in tries] == [500, 500, 200]
    assert all(d.verified for d in tries) and len({d.headers["webhook-id"] for d in tries}) == 1
    history = _recorded(cluster, retried.json()["taskID"], "WebhookDelivered")
    assert [(e["type"], e["data"].get("status_code")) for e in history] == [
        ("WebhookAttempted", 500), ("WebhookAttempted", 500), ("WebhookAttempted", 200),
        ("WebhookDelivered", 200),
    ]  # fmt: skip


def test_refused_targets_and_redirects(
    demo: tuple[Cluster, dict[str, str]], receiver: Receiver
) -> None:
    cluster, auth = demo
    for url in (receiver.url(host="127.0.0.2"), "http://169.254.169.254/latest/meta-data",
                f"ftp://127.0.0.1:{receiver.port}/"):  # fmt: skip
        refused = _submit(cluster, auth, webhook=url)
        assert refused.status_code == 400, refused.text
        assert refused.json()["msg"].startswith("webhook: ")
    bad_events = _submit(cluster, auth, webhook=receiver.url(), webhook_events="finished")
    assert bad_events.status_code == 400 and bad_events.json()["msg"].startswith("webhook_events")

    receiver.redirect.add("/moved")
    moved = _submit(cluster, auth, webhook=receiver.url("/moved"))
    assert moved.status_code == 202
    receiver.wait(lambda got: len(got) >= 2, "/moved", GUARD_S)
    assert receiver.at("/elsewhere") == [], "the redirect was not followed"
    attempts = [e for e in _webhook_events(cluster, moved.json()["taskID"])
                if e["type"] == "WebhookAttempted"]  # fmt: skip
    assert attempts and all(a["data"]["status_code"] == 302 for a in attempts)
    assert "redirects are not followed" in attempts[0]["data"]["error"]


def _restart_webhooks(cluster: Cluster) -> None:
    """Stop the webhooks role as abruptly as its deployment allows and start it again: on
    Kafka its own process, SIGKILLed; embedded, the whole `ngpu up`, SIGTERMed."""
    if cluster.on_kafka:
        (process,) = [p for p in cluster.processes
                      if "webhooks" in p.args and p.poll() is None]  # type: ignore[operator]  # fmt: skip
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        cluster._spawn(["serve", "--roles", "webhooks", "--data-dir",
                        str(cluster.data_dir / "webhooks")], "webhooks-again.log")  # fmt: skip
        return
    cluster.stop()
    cluster.processes.clear()
    cluster.start_control_plane()


def test_a_restart_in_the_middle_of_the_retries_still_delivers(
    demo: tuple[Cluster, dict[str, str]], receiver: Receiver
) -> None:
    cluster, auth = demo
    receiver.failing.add("/later")
    accepted = _submit(cluster, auth, webhook=receiver.url("/later"))
    assert accepted.status_code == 202
    task_id = accepted.json()["taskID"]
    receiver.wait(lambda got: len(got) >= 2, "/later", GUARD_S)
    _restart_webhooks(cluster)
    failed_before = len(receiver.at("/later"))
    receiver.failing.clear()
    got = receiver.wait(lambda got: got[-1].status == 200, "/later", GUARD_S)
    assert all(d.verified for d in got) and len({d.headers["webhook-id"] for d in got}) == 1
    history = _recorded(cluster, task_id, "WebhookDelivered")
    attempts = [e["data"]["attempt"] for e in history if e["type"] == "WebhookAttempted"]
    assert attempts == list(range(1, len(attempts) + 1)), "numbering went on after the restart"
    assert len(attempts) >= failed_before
    assert history[-1]["type"] == "WebhookDelivered"
