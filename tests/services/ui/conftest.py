"""A real ingress on 127.0.0.1 for the dashboard's tests: the embedded log, the directory
and task followers, a projector into chdb (the store the pages read) and the FastAPI app
served by uvicorn. No scheduler or dispatcher: a test publishes their events itself."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from clickhouse_connect.driver.client import Client

from events import Envelope, Event, topics
from projections import ProjectionWriter, Projector, create_schema
from services.bus import EmbeddedBus, decode_record, publish_events
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.store import TaskStore
from services.ingress.taskfollower import TaskFollower
from services.settings import Settings

ADMIN = "ui-admin-token-0123456789"
JOIN = "ui-join-token"
GUARD_S = 15.0


@dataclass
class Dashboard:
    url: str
    bus: EmbeddedBus
    context: IngressContext
    http: httpx.AsyncClient

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}

    async def sign_in(self) -> None:
        """Log in through the form; the client keeps the session cookie."""
        answer = await self.http.post("/ui/login", data={"token": ADMIN, "next": "/ui/tasks"})
        assert answer.status_code == 303, answer.text

    async def workspace(self, name: str) -> tuple[str, dict[str, str]]:
        body = {"name": name, "image": "ngpu/x:1", "command": "serve", "timeout_s": 60,
                "gpu": {"type": "A100", "count": 1}, "ports": [9000]}  # fmt: skip
        created = await self.http.post("/v1/workspaces", json=body, headers=self.admin())
        assert created.status_code == 201, created.text
        workspace_id = str(created.json()["workspace_id"])
        return workspace_id, {"Authorization": f"Bearer {workspace_id}"}

    async def submit(self, auth: dict[str, str], path: str = "run") -> str:
        accepted = await self.http.post(f"/user/schedulingTask?paramUrl={path}",
                                        json={"data": "x"}, headers=auth)  # fmt: skip
        assert accepted.status_code == 202, accepted.text
        return str(accepted.json()["taskID"])

    async def publish_after(self, task_id: str, *events: Event, gap_ms: float = 1) -> None:
        """Publish `events`, each timed `gap_ms` after the task's latest logged event."""
        mine = await self.logged(lambda e: e.key == task_id)
        at = max(e.occurred_at for e in mine)
        for event in events:
            at += timedelta(milliseconds=gap_ms)
            await publish_events(self.bus, [Envelope(event, occurred_at=at)])

    async def logged(self, match: Callable[[Envelope], bool]) -> list[Envelope]:
        async with asyncio.timeout(GUARD_S):
            while True:
                found = [decode_record(r) async for r in self.bus.replay([topics.TASKS])]
                found = [e for e in found if match(e)]
                if found:
                    return found
                await asyncio.sleep(0.02)

    async def page_until(self, path: str, check: Callable[[str], bool]) -> str:
        """The page at `path` once `check` holds for its text (the store lags the log by
        the projector's linger)."""
        async with asyncio.timeout(GUARD_S):
            while True:
                answer = await self.http.get(path)
                assert answer.status_code == 200, answer.text
                if check(answer.text):
                    return answer.text
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, ch_client: Client | None, **settings: Any
) -> AsyncIterator[Dashboard]:
    """An ingress whose context has a task store (and a projector filling it) when
    `ch_client` is given, else none."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    config = Settings(data_dir=tmp_path, projector_linger_s=0.1, **settings)
    bus = EmbeddedBus(config.bus_path, poll_interval_s=0.05)
    await bus.start()
    follower = DirectoryFollower(bus)
    await follower.start()
    tasks = TaskFollower(bus)
    await tasks.start()
    projecting: asyncio.Task[None] | None = None
    store = None
    flush = None
    if ch_client is not None:
        create_schema(ch_client, database)
        projector = Projector(bus, ProjectionWriter(ch_client, database), linger_s=0.1)
        projecting = asyncio.create_task(projector.run())
        store, flush = TaskStore(ch_client, database), projector.flush
    context = IngressContext(config, bus, follower, ADMIN, JOIN, tasks=tasks, store=store,
                             flush_projections=flush)  # fmt: skip
    # As `server_config` serves it: uvicorn's own proxy headers off (the app decides).
    server = uvicorn.Server(uvicorn.Config(create_app(context), host="127.0.0.1", port=0,
                                           lifespan="off", log_level="warning",
                                           proxy_headers=False))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield Dashboard(url, bus, context, http)
    finally:
        server.should_exit = True
        await serving
        if projecting is not None:
            projecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projecting
        await tasks.close()
        await follower.close()
        await bus.close()
        if ch_client is not None:
            ch_client.command(f"DROP DATABASE IF EXISTS {database} SYNC")


@pytest.fixture
async def dashboard(tmp_path: Path, ch_client: Client) -> AsyncIterator[Dashboard]:
    async with running(tmp_path, ch_client) as instance:
        yield instance
