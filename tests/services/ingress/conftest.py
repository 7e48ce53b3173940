"""A real control plane over HTTP on 127.0.0.1: embedded bus, directory, FastAPI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.bus import EmbeddedBus
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.settings import Settings

ADMIN = "admin-secret-token"
JOIN = "join-secret-token"


@dataclass
class ControlPlane:
    url: str
    bus: EmbeddedBus
    context: IngressContext
    http: httpx.AsyncClient

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN}"}

    def join(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {JOIN}"}


@pytest.fixture
async def control_plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    settings = Settings(data_dir=tmp_path, heartbeat_interval_s=0.5, node_lost_after_s=3)
    bus = EmbeddedBus(settings.bus_path, poll_interval_s=0.05)
    await bus.start()
    follower = DirectoryFollower(bus)
    await follower.start()
    context = IngressContext(settings, bus, follower, ADMIN, JOIN)
    config = uvicorn.Config(create_app(context), host="127.0.0.1", port=0, lifespan="off",
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield ControlPlane(url, bus, context, http)
    server.should_exit = True
    await serving
    await follower.close()
    await bus.close()
