"""The ingress answers while its directory catches up with the log: `/healthz` (alive) at
once, `/readyz` 503 naming what it waits for, every other route 503 ("the gateway is
starting"); once the directory has folded what the log held, `/readyz` is 200 and the
API answers from the whole directory. The catch-up is held by the bus (its consumers hand
out nothing until the test releases them), so no step depends on timing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.bus import publish_events
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.starting import STARTING
from services.ingress.taskfollower import TaskFollower
from services.readiness import Readiness
from services.settings import Settings
from tests.services.ingress.conftest import ADMIN, JOIN
from tests.services.scheduler.builders import node_registered, workspace_registered
from tests.support.held import HeldBus


@dataclass
class Starting:
    bus: HeldBus
    http: httpx.AsyncClient
    following: asyncio.Task[None]


@pytest.fixture
async def starting(tmp_path: Path) -> AsyncIterator[Starting]:
    """An ingress started as `services.roles` starts it: the task follower started, the
    server serving, the directory follower running beside it over a log that holds a
    workspace and a node."""
    bus = HeldBus(tmp_path / "bus.sqlite3")
    await bus.start()
    await publish_events(bus, [workspace_registered("ws"), node_registered("n1")])
    readiness = Readiness()
    follower = DirectoryFollower(bus, ready=readiness.component("directory"))
    tasks = TaskFollower(bus, ready=readiness.component("tasks"))
    await tasks.start()
    context = IngressContext(Settings(data_dir=tmp_path), bus, follower, ADMIN, JOIN,
                             tasks=tasks, readiness=readiness)  # fmt: skip
    config = uvicorn.Config(create_app(context), host="127.0.0.1", port=0, lifespan="off",
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    following = asyncio.create_task(follower.run())
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield Starting(bus, http, following)
    server.should_exit = True
    await serving
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    await follower.close()
    await tasks.close()
    await bus.close()


ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_readyz_is_503_until_the_directory_has_caught_up_then_200(
    starting: Starting, caplog: pytest.LogCaptureFixture
) -> None:
    http = starting.http
    assert (await http.get("/healthz")).json() == {"ok": True}
    waiting = await http.get("/readyz")
    assert waiting.status_code == 503
    assert waiting.json() == {"ready": False, "waiting_for": ["directory"]}

    with caplog.at_level(logging.INFO):
        starting.bus.released.set()
        async with asyncio.timeout(30):  # a hang guard, not a measure
            while (ready := await http.get("/readyz")).status_code != 200:  # noqa: ASYNC110 - polled over HTTP, as a probe does
                await asyncio.sleep(0.02)
    assert ready.json() == {"ready": True}
    assert (await http.get("/healthz")).status_code == 200
    workspace = await http.get("/v1/workspaces/ws", headers=ADMIN_AUTH)
    assert workspace.status_code == 200 and workspace.json()["name"] == "ws"
    nodes = (await http.get("/v1/nodes", headers=ADMIN_AUTH)).json()["nodes"]
    assert [n["node_id"] for n in nodes] == ["n1"]
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("directory: caught up, 2 of 2 records (") for line in said), said
    assert "ready: caught up with the log (directory, tasks)" in said


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        ("GET", "/v1/workspaces/ws", ADMIN_AUTH, {"error": {"code": "starting",
                                                            "message": STARTING, "field": None}}),
        ("GET", "/v1/nodes", ADMIN_AUTH, {"error": {"code": "starting", "message": STARTING,
                                                    "field": None}}),
        ("POST", "/v1/nodes/register", {"Authorization": f"Bearer {JOIN}"},
         {"error": {"code": "starting", "message": STARTING, "field": None}}),
        ("GET", "/user/queryTask?taskID=1", {"Authorization": "Bearer ws"},
         {"result_code": 503, "msg": STARTING}),
        ("POST", "/user/img2img", {"Authorization": "Bearer ws"},
         {"result_code": 503, "msg": STARTING}),
    ],
)  # fmt: skip
async def test_routes_that_need_the_directory_answer_503_while_it_catches_up(
    starting: Starting, method: str, path: str, headers: dict[str, str], body: object
) -> None:
    answer = await starting.http.request(method, path, headers=headers, json={"data": {}})
    assert answer.status_code == 503
    assert answer.json() == body
    assert answer.headers["retry-after"] == "1"
    assert not starting.following.done()


async def test_the_docs_and_the_brc20_check_answer_while_it_catches_up(starting: Starting) -> None:
    assert (await starting.http.get("/openapi.json")).status_code == 200
    check = await starting.http.get("/brc20/checkAddress", params={"address": "bc1qxyz"})
    assert STARTING not in check.text  # it reads no directory
    assert not starting.following.done()
