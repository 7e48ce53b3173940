"""`cancelTask`, the per-task `timeout_s`/`ttl_s`/`priority`, and `Prefer: wait=N`, on an
in-process ingress over the embedded log with no scheduler or dispatcher: the test ends
tasks as they would (it publishes their events), so every race is played out in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from events import (
    Event,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskSubmitted,
    topics,
)
from services.bus import EmbeddedBus, decode_record, publish_events
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.directory import WorkspaceView
from services.ingress.errors import BadRequest
from services.ingress.routers import ngpu
from services.ingress.store import TaskStore
from services.ingress.taskfollower import TaskFollower
from services.ingress.taskoptions import TaskOptions, prefer_wait, task_options
from services.settings import Settings
from tests.services.scheduler.builders import workspace_registered

ADMIN = "admin-secret-token"
T0 = datetime(2026, 12, 1, tzinfo=UTC)
GUARD_S = 10.0


@dataclass
class Ingress:
    bus: EmbeddedBus
    tasks: TaskFollower
    http: httpx.AsyncClient

    async def workspace(self, name: str, **fields: Any) -> tuple[str, dict[str, str]]:
        body = {"name": name, "image": "x", "command": "true", "timeout_s": 60,
                "gpu": {"type": "A100", "count": 1}, "ports": [9000], **fields}  # fmt: skip
        created = await self.http.post("/v1/workspaces", json=body, headers=_admin())
        assert created.status_code == 201, created.text
        workspace_id = created.json()["workspace_id"]
        return workspace_id, {"Authorization": f"Bearer {workspace_id}"}

    async def submit(self, auth: dict[str, str], query: str = "") -> str:
        accepted = await self.http.post(f"/user/schedulingTask?paramUrl=run{query}",
                                        json={"data": "{}"}, headers=auth)  # fmt: skip
        assert accepted.status_code == 202, accepted.text
        return str(accepted.json()["taskID"])

    async def events(self) -> list[Event]:
        return [decode_record(r).event async for r in self.bus.replay([topics.TASKS])]

    async def requested(self, task_id: str) -> TaskCancelRequested:
        """Wait for the cancel request of `task_id` in the log."""
        async with asyncio.timeout(GUARD_S):
            while True:
                for event in await self.events():
                    if isinstance(event, TaskCancelRequested) and event.task_id == task_id:
                        return event
                await asyncio.sleep(0.02)

    async def submitted(self) -> list[TaskSubmitted]:
        """Wait for a `TaskSubmitted` in the log; every one there."""
        async with asyncio.timeout(GUARD_S):
            while True:
                found = [e for e in await self.events() if isinstance(e, TaskSubmitted)]
                if found:
                    return found
                await asyncio.sleep(0.02)

    async def ended(self, task_id: str) -> None:
        async with asyncio.timeout(GUARD_S):
            while not ((status := self.tasks.status(task_id)) and status.ended):  # noqa: ASYNC110
                await asyncio.sleep(0.02)


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


def _completed(task_id: str, workspace_id: str) -> TaskCompleted:
    return TaskCompleted(task_id, workspace_id, 1, "n", "h", "a", 200, '{"ok": 1}', T0, T0,
                         "A100", 1)  # fmt: skip


@pytest.fixture
async def ingress(tmp_path: Path) -> AsyncIterator[Ingress]:
    config = Settings(data_dir=tmp_path, sync_wait_max_s=30, task_ttl_s=120)
    bus = EmbeddedBus(config.bus_path, poll_interval_s=0.05)
    await bus.start()
    follower = DirectoryFollower(bus)
    await follower.start()
    tasks = TaskFollower(bus)
    await tasks.start()
    # Every task here is one this ingress follows: the projections are never read.
    context = IngressContext(config, bus, follower, ADMIN, "join", tasks=tasks,
                             store=TaskStore(None, "unused"))  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=0,
                                           lifespan="off", log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield Ingress(bus, tasks, http)
    server.should_exit = True
    await serving
    await tasks.close()
    await follower.close()
    await bus.close()


# -- cancelTask --------------------------------------------------------------------------


async def test_a_cancelled_task_answers_200_then_410_and_409(ingress: Ingress) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    task_id = await ingress.submit(auth)
    cancelling = asyncio.create_task(
        ingress.http.post(f"/user/cancelTask?taskID={task_id}", headers=auth)
    )
    request = await ingress.requested(task_id)
    assert request == TaskCancelRequested(task_id, workspace_id, "cancelled by the caller")
    # The scheduler's answer to the request of a queued task.
    await publish_events(ingress.bus, [TaskCancelled(task_id, workspace_id, request.reason)])
    answer = await cancelling
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"result_code": 200, "msg": "the task was cancelled",
                             "taskID": task_id}  # fmt: skip
    queried = await ingress.http.get(f"/user/queryTask?taskID={task_id}", headers=auth)
    assert queried.status_code == 410 and queried.json()["result_code"] == 410
    again = await ingress.http.post(f"/user/cancelTask&taskID={task_id}", headers=auth)
    assert again.status_code == 409, again.text
    assert again.json() == {"result_code": 409, "msg": "the task has already ended: cancelled",
                            "taskID": task_id, "state": 5}  # fmt: skip


async def test_an_outcome_that_wins_the_race_answers_409_with_its_state(
    ingress: Ingress,
) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    task_id = await ingress.submit(auth)
    cancelling = asyncio.create_task(
        ingress.http.post(f"/user/cancelTask?taskID={task_id}", headers=auth)
    )
    await ingress.requested(task_id)
    # The call returned before the dispatcher read the request: its outcome is the end.
    await publish_events(ingress.bus, [_completed(task_id, workspace_id)])
    answer = await cancelling
    assert answer.status_code == 409, answer.text
    assert answer.json()["state"] == 3 and "completed" in answer.json()["msg"]
    queried = await ingress.http.get(f"/user/queryTask?taskID={task_id}", headers=auth)
    assert queried.status_code == 200


async def test_an_ended_task_is_409_at_once_and_publishes_nothing(ingress: Ingress) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    task_id = await ingress.submit(auth)
    await publish_events(ingress.bus, [_completed(task_id, workspace_id)])
    await ingress.ended(task_id)
    answer = await ingress.http.post(f"/user/cancelTask?taskID={task_id}", headers=auth)
    assert answer.status_code == 409 and answer.json()["state"] == 3
    assert not any(isinstance(e, TaskCancelRequested) for e in await ingress.events())


async def test_a_cancel_still_under_way_answers_202(
    ingress: Ingress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ngpu, "CANCEL_WAIT_S", 0.2)
    _, auth = await ingress.workspace("alpha")
    task_id = await ingress.submit(auth)
    answer = await ingress.http.post(f"/user/cancelTask?taskID={task_id}", headers=auth)
    assert answer.status_code == 202, answer.text
    assert answer.json()["result_code"] == 100 and answer.json()["taskID"] == task_id
    await ingress.requested(task_id)


async def test_another_workspace_s_task_is_404_and_a_missing_id_400(ingress: Ingress) -> None:
    _, alpha = await ingress.workspace("alpha")
    _, beta = await ingress.workspace("beta")
    task_id = await ingress.submit(alpha)
    for path in (f"/user/cancelTask?taskID={task_id}", f"/user/cancelTask&taskID={task_id}"):
        refused = await ingress.http.post(path, headers=beta)
        assert refused.status_code == 404, refused.text
        assert refused.json()["result_code"] == 404
    missing = await ingress.http.post("/user/cancelTask", headers=alpha)
    assert missing.status_code == 400 and missing.json()["msg"].startswith("taskID")
    assert not any(isinstance(e, TaskCancelRequested) for e in await ingress.events())


async def test_a_sync_caller_whose_task_is_cancelled_gets_410(ingress: Ingress) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    calling = asyncio.create_task(ingress.http.post("/user/run", json={"data": ""}, headers=auth))
    (submitted,) = await ingress.submitted()
    task_id = submitted.task_id
    await publish_events(ingress.bus, [TaskCancelled(task_id, workspace_id, "by the caller")])
    answer = await calling
    assert answer.status_code == 410, answer.text
    assert answer.json()["result_code"] == 410 and answer.json()["taskID"] == task_id
    assert answer.headers["X-NGPU-Task-ID"] == task_id


# -- Prefer: wait=N --------------------------------------------------------------------------


async def test_a_sync_call_past_its_preferred_wait_answers_202_and_goes_on(
    ingress: Ingress,
) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    answer = await ingress.http.post("/user/run", json={"data": ""},
                                     headers={**auth, "Prefer": "wait=1"})  # fmt: skip
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["result_code"] == 100 and set(body) == {"result_code", "msg", "taskID"}
    assert answer.headers["X-NGPU-Task-ID"] == body["taskID"]
    assert answer.headers["Preference-Applied"] == "wait=1"
    status = ingress.tasks.status(body["taskID"])
    assert status is not None and not status.ended  # it goes on
    await publish_events(ingress.bus, [_completed(body["taskID"], workspace_id)])
    await ingress.ended(body["taskID"])
    done = await ingress.http.get(f"/user/queryTask?taskID={body['taskID']}", headers=auth)
    assert done.json()["result_code"] == 200


async def test_a_sync_call_that_ends_within_its_preferred_wait_answers_as_usual(
    ingress: Ingress,
) -> None:
    workspace_id, auth = await ingress.workspace("alpha")
    prefer = {**auth, "Prefer": "respond-async, wait=20"}
    calling = asyncio.create_task(ingress.http.post("/user/run", json={"data": ""}, headers=prefer))
    (submitted,) = await ingress.submitted()
    await publish_events(ingress.bus, [_completed(submitted.task_id, workspace_id)])
    answer = await calling
    assert answer.status_code == 200
    assert answer.json() == {"result_code": 200, "msg": "success", "data": '{"ok": 1}'}


# -- timeout_s, ttl_s, priority --------------------------------------------------------------


async def test_the_task_options_are_recorded_in_the_submission(ingress: Ingress) -> None:
    workspace_id, auth = await ingress.workspace("alpha", max_priority=5)
    await ingress.submit(auth, "&timeout_s=2.5&ttl_s=30&priority=5")
    await ingress.submit(auth)
    patched = await ingress.http.patch(f"/v1/workspaces/{workspace_id}",
                                       json={"max_priority": 0}, headers=_admin())  # fmt: skip
    assert patched.json()["max_priority"] == 0
    too_high = await ingress.http.patch(f"/v1/workspaces/{workspace_id}",
                                        json={"max_priority": 10}, headers=_admin())  # fmt: skip
    assert too_high.status_code == 422 and too_high.json()["error"]["field"] == "max_priority"
    refused = await ingress.http.post("/user/schedulingTask?paramUrl=run&priority=1",
                                      json={"data": ""}, headers=auth)  # fmt: skip
    assert refused.status_code == 400 and refused.json()["msg"].startswith("priority:")
    chosen, default = [e for e in await ingress.events() if isinstance(e, TaskSubmitted)]
    assert (chosen.timeout_s, chosen.ttl_s, chosen.priority) == (2.5, 30.0, 5)
    assert (default.timeout_s, default.ttl_s, default.priority) == (60.0, 120.0, 0)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/user/schedulingTask?paramUrl=run&timeout_s=0", "timeout_s"),
        ("/user/schedulingTask?paramUrl=run&timeout_s=61", "timeout_s"),
        ("/user/schedulingTask?paramUrl=run&ttl_s=-1", "ttl_s"),
        ("/user/schedulingTask?paramUrl=run&ttl_s=121", "ttl_s"),
        ("/user/schedulingTask?paramUrl=run&ttl_s=nan", "ttl_s"),
        ("/user/schedulingTask?paramUrl=run&priority=1", "priority"),
        ("/user/run?timeout_s=soon", "timeout_s"),
        ("/user/run?ttl_s=1e400", "ttl_s"),
        ("/user/run?priority=-1", "priority"),
    ],
)
async def test_out_of_range_options_are_400_naming_them(
    ingress: Ingress, path: str, field: str
) -> None:
    _, auth = await ingress.workspace("alpha")
    refused = await ingress.http.post(path, json={"data": ""}, headers=auth)
    assert refused.status_code == 400, refused.text
    assert refused.json()["result_code"] == 400
    assert refused.json()["msg"].startswith(f"{field}:")
    assert "X-NGPU-Task-ID" not in refused.headers
    assert await ingress.events() == []


async def test_a_bad_preferred_wait_is_400_naming_prefer(ingress: Ingress) -> None:
    _, auth = await ingress.workspace("alpha")
    refused = await ingress.http.post("/user/run", json={"data": ""},
                                      headers={**auth, "Prefer": "wait=soon"})  # fmt: skip
    assert refused.status_code == 400 and refused.json()["msg"].startswith("Prefer:")
    assert await ingress.events() == []


def _view(timeout_s: float = 60.0, max_priority: int = 3) -> WorkspaceView:
    return WorkspaceView(workspace_registered("w"), {}, 1, 1, timeout_s, T0,
                         max_priority=max_priority)  # fmt: skip


SETTINGS = Settings(task_ttl_s=300)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, TaskOptions(60.0, 300.0, 0)),
        ({"timeout_s": "", "ttl_s": "", "priority": ""}, TaskOptions(60.0, 300.0, 0)),
        ({"timeout_s": "0.5", "ttl_s": "1e2", "priority": "3"}, TaskOptions(0.5, 100.0, 3)),
        ({"timeout_s": "60", "ttl_s": "300", "priority": "0"}, TaskOptions(60.0, 300.0, 0)),
        ({"timeout_s": ".25"}, TaskOptions(0.25, 300.0, 0)),
    ],
)
def test_task_options_within_range(query: dict[str, str], expected: TaskOptions) -> None:
    assert task_options(query, _view(), SETTINGS) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"timeout_s": "0"}, "timeout_s"),
        ({"timeout_s": "60.001"}, "timeout_s"),
        ({"timeout_s": "1e-400"}, "timeout_s"),
        ({"timeout_s": "inf"}, "timeout_s"),
        ({"timeout_s": "\u0661"}, "timeout_s"),  # ARABIC-INDIC ONE: a digit to float()
        ({"timeout_s": "1_0"}, "timeout_s"),
        ({"ttl_s": "301"}, "ttl_s"),
        ({"ttl_s": " 5"}, "ttl_s"),
        ({"ttl_s": "9" * 40}, "ttl_s"),
        ({"priority": "4"}, "priority"),
        ({"priority": "1.0"}, "priority"),
        ({"priority": "²"}, "priority"),
        ({"priority": "+1"}, "priority"),
    ],
)
def test_task_options_out_of_range(query: dict[str, str], field: str) -> None:
    with pytest.raises(BadRequest) as refused:
        task_options(query, _view(), SETTINGS)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        (["respond-async"], None),
        (["wait=0"], 0),
        (["wait=10"], 10),
        (["Wait = 7"], 7),
        (['wait="3"'], 3),
        (["respond-async, wait=5; x=y"], 5),
        (["handling=lenient", "wait=2, wait=9"], 2),
    ],
)
def test_prefer_wait(values: list[str], expected: int | None) -> None:
    assert prefer_wait(values) == expected


@pytest.mark.parametrize("value", ["wait=", "wait=-1", "wait=1.5", "wait=86401", "wait=x"])
def test_a_bad_prefer_wait_is_refused(value: str) -> None:
    with pytest.raises(BadRequest) as refused:
        prefer_wait([value])
    assert refused.value.field == "Prefer"
