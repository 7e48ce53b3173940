"""`GET /v1/tasks/{taskID}`: a task's event history, on an in-process ingress over the
embedded log with a real projector into chdb (the archive the view reads). No scheduler
or dispatcher: the test publishes their events, as in `test_cancel_and_options`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client

from events import (
    Envelope,
    Event,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskDispatched,
    WebhookAttempted,
    WebhookDelivered,
    topics,
)
from projections import ProjectionWriter, Projector, create_schema
from services.bus import EmbeddedBus, decode_record, publish_events
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.store import TaskStore
from services.ingress.taskfollower import TaskFollower
from services.settings import Settings

ADMIN = "admin-secret-token"
GUARD_S = 15.0
REQUEST_BODY = "request-body-that-must-not-show"
RESPONSE_BODY = "response-body-that-must-not-show"
HOST_PORT = 31_987


@dataclass
class Ingress:
    bus: EmbeddedBus
    tasks: TaskFollower
    http: httpx.AsyncClient

    async def workspace(self, name: str) -> tuple[str, dict[str, str]]:
        body = {"name": name, "image": "x", "command": "true", "timeout_s": 60,
                "gpu": {"type": "A100", "count": 1}, "ports": [9000]}  # fmt: skip
        admin = {"Authorization": f"Bearer {ADMIN}"}
        created = await self.http.post("/v1/workspaces", json=body, headers=admin)
        assert created.status_code == 201, created.text
        workspace_id = created.json()["workspace_id"]
        return workspace_id, {"Authorization": f"Bearer {workspace_id}"}

    async def submit(self, auth: dict[str, str]) -> str:
        accepted = await self.http.post("/user/schedulingTask?paramUrl=run&priority=0",
                                        json={"data": REQUEST_BODY}, headers=auth)  # fmt: skip
        assert accepted.status_code == 202, accepted.text
        return str(accepted.json()["taskID"])

    async def publish_after(self, task_id: str, *events: Event) -> None:
        """Publish `events`, each timed a millisecond after the task's latest event."""
        mine = await self.logged(lambda e: e.key == task_id)
        at = max(e.occurred_at for e in mine)
        for event in events:
            at += timedelta(milliseconds=1)
            await publish_events(self.bus, [Envelope(event, occurred_at=at)])

    async def envelopes(self) -> list[Envelope]:
        return [decode_record(r) async for r in self.bus.replay([topics.TASKS])]

    async def logged(self, match: Callable[[Envelope], bool]) -> list[Envelope]:
        """Wait for events in the log that `match`; every one there."""
        async with asyncio.timeout(GUARD_S):
            while True:
                found = [e for e in await self.envelopes() if match(e)]
                if found:
                    return found
                await asyncio.sleep(0.02)

    async def history(self, task_id: str, auth: dict[str, str], count: int) -> dict[str, Any]:
        """The task's view once it lists `count` events (the archive may lag the log by
        the projector's linger)."""
        async with asyncio.timeout(GUARD_S):
            while True:
                answer = await self.http.get(f"/v1/tasks/{task_id}", headers=auth)
                assert answer.status_code == 200, answer.text
                assert REQUEST_BODY not in answer.text and RESPONSE_BODY not in answer.text
                assert str(HOST_PORT) not in answer.text
                if len(answer.json()["events"]) >= count:
                    return dict(answer.json())
                await asyncio.sleep(0.05)


@pytest.fixture
async def ingress(tmp_path: Path, ch_client: Client) -> AsyncIterator[Ingress]:
    database = f"t_{uuid.uuid4().hex[:12]}"
    create_schema(ch_client, database)
    config = Settings(data_dir=tmp_path, task_ttl_s=120, projector_linger_s=0.2)
    bus = EmbeddedBus(config.bus_path, poll_interval_s=0.05)
    await bus.start()
    follower = DirectoryFollower(bus)
    await follower.start()
    tasks = TaskFollower(bus)
    await tasks.start()
    projector = Projector(bus, ProjectionWriter(ch_client, database), linger_s=0.2)
    projecting = asyncio.create_task(projector.run())
    context = IngressContext(config, bus, follower, ADMIN, "join", tasks=tasks,
                             store=TaskStore(ch_client, database),
                             flush_projections=projector.flush)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=0,
                                           lifespan="off", log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            yield Ingress(bus, tasks, http)
    finally:
        server.should_exit = True
        await serving
        projecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await projecting
        await tasks.close()
        await follower.close()
        await bus.close()
        ch_client.command(f"DROP DATABASE IF EXISTS {database} SYNC")


async def test_a_completed_task_lists_its_events_in_order(ingress: Ingress) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    _, beta = await ingress.workspace("beta")
    task_id = await ingress.submit(auth)
    now = datetime.now(UTC)
    await ingress.publish_after(
        task_id,
        TaskDispatched(task_id, workspace_id, 1, "node-1", "10.0.0.1", "addr", "dep-1",
                       HOST_PORT, "/run", REQUEST_BODY),
        TaskCompleted(task_id, workspace_id, 1, "node-1", "10.0.0.1", "addr", 200,
                      RESPONSE_BODY, now, now, "A100", 1),
        WebhookAttempted(task_id, workspace_id, "completed", "msg_1", 1, 200, 12.5),
        WebhookDelivered(task_id, workspace_id, "completed", "msg_1", 1, 200),
    )  # fmt: skip
    view = await ingress.history(task_id, auth, 5)
    events = view.pop("events")
    assert view == {"taskID": task_id, "workspace_id": workspace_id, "state": "completed",
                    "priority": 0, "timeout_s": 60.0, "ttl_s": 120.0, "webhook": None}  # fmt: skip
    assert [e["type"] for e in events] == ["TaskSubmitted", "TaskDispatched", "TaskCompleted",
                                           "WebhookAttempted", "WebhookDelivered"]  # fmt: skip
    submitted, dispatched, completed, attempted, delivered = events
    assert submitted["mode"] == "async" and submitted["method"] == "schedulingTask"
    at = dispatched["at"]
    assert dispatched == {"type": "TaskDispatched", "at": at, "attempt": 1, "node_id": "node-1",
                          "revision": 0}  # fmt: skip
    assert (completed["attempt"], completed["node_id"], completed["status_code"]) == (
        1, "node-1", 200)  # fmt: skip
    assert attempted["kind"] == "completed" and attempted["latency_ms"] == 12.5
    assert delivered["attempts"] == 1 and delivered["status_code"] == 200
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)

    # Another workspace's bearer: 404, as for a task that does not exist.
    for path in (f"/v1/tasks/{task_id}", "/v1/tasks/no-such-task"):
        refused = await ingress.http.get(path, headers=beta)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "not_found"
    unknown = await ingress.http.get("/v1/tasks/no-such-task", headers=auth)
    assert unknown.status_code == 404 and unknown.json() == refused.json()
    # No or a bad bearer: 401, as on the /user routes.
    for headers in ({}, {"Authorization": "Bearer 12345"}):
        denied = await ingress.http.get(f"/v1/tasks/{task_id}", headers=headers)
        assert denied.status_code == 401, denied.text


async def test_a_cancelled_task_lists_the_request_and_the_cancel(ingress: Ingress) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    task_id = await ingress.submit(auth)
    # Seen submitted by this ingress: the view waits for the archive rather than 404.
    first = await ingress.http.get(f"/v1/tasks/{task_id}", headers=auth)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "queued"
    cancelling = asyncio.create_task(
        ingress.http.post(f"/user/cancelTask?taskID={task_id}", headers=auth)
    )
    await ingress.logged(lambda e: isinstance(e.event, TaskCancelRequested) and e.key == task_id)
    # The scheduler's answer to the cancel of a queued task.
    await ingress.publish_after(task_id, TaskCancelled(task_id, workspace_id, "by the caller"))
    assert (await cancelling).status_code == 200
    view = await ingress.history(task_id, auth, 3)
    assert view["state"] == "cancelled"
    assert view["events"][1:] == [
        {"type": "TaskCancelRequested", "at": view["events"][1]["at"],
         "reason": "cancelled by the caller"},
        {"type": "TaskCancelled", "at": view["events"][2]["at"], "reason": "by the caller"},
    ]  # fmt: skip
    assert view["events"][0]["type"] == "TaskSubmitted"
