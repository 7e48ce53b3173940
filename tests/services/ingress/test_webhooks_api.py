"""The ingress's side of webhooks: `schedulingTask`'s `webhook` and `webhook_events`
(checked before anything is published, a bad one a 400 naming it), and each workspace's
signing secret, answered once at creation and at each rotation, never written to the log.
An in-process ingress on the embedded log over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from standardwebhooks import Webhook

from events import TaskSubmitted, WebhookSecretRotated, WorkspaceRegistered, topics
from services.bus import EmbeddedBus, decode_record
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.store import TaskStore
from services.ingress.taskfollower import TaskFollower
from services.settings import Settings
from services.webhooks.secrets import workspace_secret

ADMIN = "admin-secret-token"
KEY = b"webhook-key-of-this-test-0123456"
WORKSPACE: dict[str, Any] = {"name": "w", "image": "x", "command": "true",
                             "gpu": {"type": "A100", "count": 1}, "ports": [9000]}  # fmt: skip


@dataclass
class Ingress:
    bus: EmbeddedBus
    http: httpx.AsyncClient

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}

    async def log(self, topic: str) -> list[Any]:
        return [decode_record(r).event async for r in self.bus.replay([topic])]

    async def raw_log(self) -> bytes:
        return b"".join([r.value async for r in self.bus.replay(list(topics.ALL_TOPICS))])


@pytest.fixture
async def ingress(tmp_path: Path) -> AsyncIterator[Ingress]:
    config = Settings(data_dir=tmp_path, webhook_host_allow=["127.0.0.1/32"])
    bus = EmbeddedBus(config.bus_path, poll_interval_s=0.05)
    await bus.start()
    follower = DirectoryFollower(bus)
    await follower.start()
    tasks = TaskFollower(bus)
    await tasks.start()
    context = IngressContext(config, bus, follower, ADMIN, "join", tasks=tasks,
                             store=TaskStore(None, "unused"), webhook_key=KEY)  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=0,
                                           lifespan="off", log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield Ingress(bus, http)
    server.should_exit = True
    await serving
    await tasks.close()
    await follower.close()
    await bus.close()


async def _workspace(ingress: Ingress) -> dict[str, Any]:
    created = await ingress.http.post("/v1/workspaces", json=WORKSPACE, headers=ingress.admin())
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def test_the_secret_is_answered_once_and_derived_not_stored(ingress: Ingress) -> None:
    created = await _workspace(ingress)
    secret = created["webhook_secret"]
    Webhook(secret)  # the Standard Webhooks library takes it as is
    (registered,) = await ingress.log(topics.WORKSPACES)
    assert isinstance(registered, WorkspaceRegistered) and registered.webhook_salt
    assert secret == workspace_secret(KEY, created["workspace_id"], registered.webhook_salt)
    read = await ingress.http.get(f"/v1/workspaces/{created['workspace_id']}",
                                  headers=ingress.admin())  # fmt: skip
    assert "webhook_secret" not in read.json()
    assert read.json() == {k: v for k, v in created.items() if k != "webhook_secret"}
    assert secret.removeprefix("whsec_").encode() not in await ingress.raw_log()


async def test_a_rotation_answers_a_new_secret_and_records_only_its_salt(
    ingress: Ingress,
) -> None:
    created = await _workspace(ingress)
    workspace_id = created["workspace_id"]
    path = f"/v1/workspaces/{workspace_id}/webhook-secret"
    rotated = await ingress.http.post(path, headers=ingress.admin())
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["workspace_id"] == workspace_id
    secret = rotated.json()["webhook_secret"]
    assert secret.startswith("whsec_") and secret != created["webhook_secret"]
    _, rotation = await ingress.log(topics.WORKSPACES)
    assert isinstance(rotation, WebhookSecretRotated)
    assert secret == workspace_secret(KEY, workspace_id, rotation.salt)
    assert secret.removeprefix("whsec_").encode() not in await ingress.raw_log()
    refused = await ingress.http.post(path, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    unknown = await ingress.http.post("/v1/workspaces/123/webhook-secret", headers=ingress.admin())
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "workspace_id"


@pytest.mark.parametrize(
    ("query", "field", "why"),
    [
        ({"webhook": "http://127.0.0.2:9/h"}, "webhook", "loopback"),
        ({"webhook": "http://169.254.169.254/latest/meta-data"}, "webhook", "link-local"),
        ({"webhook": "http://10.1.2.3/h"}, "webhook", "private"),
        ({"webhook": "ftp://127.0.0.1/h"}, "webhook", "http or https"),
        ({"webhook": "/relative"}, "webhook", "http or https"),
        ({"webhook": "http://127.0.0.1/" + "a" * 2048}, "webhook", "2048"),
        ({"webhook": "http://u:p@127.0.0.1/h"}, "webhook", "password"),
        ({"webhook": "http://127.0.0.1:9/h", "webhook_events": "finished"},
         "webhook_events", "start, completed"),
        ({"webhook": "http://127.0.0.1:9/h", "webhook_events": "start,"},
         "webhook_events", "start, completed"),
        ({"webhook_events": "start"}, "webhook_events", "give webhook"),
    ],
)  # fmt: skip
async def test_a_bad_webhook_is_a_400_naming_it_and_publishes_nothing(
    ingress: Ingress, query: dict[str, str], field: str, why: str
) -> None:
    auth = {"Authorization": f"Bearer {(await _workspace(ingress))['workspace_id']}"}
    answer = await ingress.http.post("/user/schedulingTask", params={"paramUrl": "run", **query},
                                     json={"data": "x"}, headers=auth)  # fmt: skip
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"result_code", "msg"} and body["result_code"] == 400
    assert body["msg"].startswith(f"{field}: ") and why in body["msg"]
    assert "X-NGPU-Task-ID" not in answer.headers
    assert await ingress.log(topics.TASKS) == []


@pytest.mark.parametrize(
    ("events", "kinds"),
    [(None, ("completed",)), ("completed", ("completed",)), ("start", ("start",)),
     ("start,completed", ("start", "completed")), ("completed, start", ("completed", "start"))],
)  # fmt: skip
async def test_a_webhook_travels_with_its_task(
    ingress: Ingress, events: str | None, kinds: tuple[str, ...]
) -> None:
    auth = {"Authorization": f"Bearer {(await _workspace(ingress))['workspace_id']}"}
    url = "http://127.0.0.1:9/hook?token=abc"
    query = {"paramUrl": "run", "webhook": url}
    if events is not None:
        query["webhook_events"] = events
    answer = await ingress.http.post("/user/schedulingTask", params=query, json={"data": "x"},
                                     headers=auth)  # fmt: skip
    assert answer.status_code == 202, answer.text
    assert set(answer.json()) == {"result_code", "msg", "taskID"}
    (submitted,) = await ingress.log(topics.TASKS)
    assert isinstance(submitted, TaskSubmitted)
    assert (submitted.webhook, submitted.webhook_events) == (url, kinds)
    assert submitted.param_url == "/run"


async def test_a_submission_without_a_webhook_has_none(ingress: Ingress) -> None:
    auth = {"Authorization": f"Bearer {(await _workspace(ingress))['workspace_id']}"}
    answer = await ingress.http.post("/user/schedulingTask?paramUrl=run", json={"data": "x"},
                                     headers=auth)  # fmt: skip
    assert answer.status_code == 202
    (submitted,) = await ingress.log(topics.TASKS)
    assert isinstance(submitted, TaskSubmitted)
    assert (submitted.webhook, submitted.webhook_events) == ("", ())


async def test_openapi_documents_the_webhook_parameters_and_the_secret(ingress: Ingress) -> None:
    doc = (await ingress.http.get("/openapi.json")).json()
    params = {p["name"]: p for p in doc["paths"]["/user/schedulingTask"]["post"]["parameters"]}
    assert params["webhook"]["required"] is False
    assert params["webhook"]["schema"]["type"] == "string"
    assert params["webhook_events"]["schema"]["type"] == "string"
    for path, method, code in (
        ("/v1/workspaces", "post", "201"),
        ("/v1/workspaces/{workspace_id}/webhook-secret", "post", "200"),
    ):
        answer = doc["paths"][path][method]["responses"][code]["content"]["application/json"]
        model = doc["components"]["schemas"][answer["schema"]["$ref"].rsplit("/", 1)[1]]
        assert "webhook_secret" in model["properties"], path
        assert "webhook_secret" in model["required"], path
