"""The agent's proxy relays a streamed response chunk by chunk: the caller holds the
container's first chunk while the container still waits to write the rest (a gate the
test opens only after reading it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

from services.callsign import deployment_secret, sign
from services.nodeagent.proxy import DeploymentProxies

KEY = b"k" * 32
DEPLOYMENT = "dep-1"
SECRET = deployment_secret(KEY, DEPLOYMENT)


@dataclass
class GatedContainer:
    """Writes `first`, waits for `gate`, then writes `rest` (an SSE-shaped stream)."""

    port: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    first: bytes = b"data: one\n\n"
    rest: bytes = b"data: two\n\n"
    finished: bool = False


@pytest.fixture
async def container() -> AsyncIterator[GatedContainer]:
    box = GatedContainer()

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(box.first)
        await box.gate.wait()
        await response.write(box.rest)
        await response.write_eof()
        box.finished = True
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    box.port = int(runner.addresses[0][1])
    yield box
    box.gate.set()
    await runner.cleanup()


@pytest.fixture
async def proxy(container: GatedContainer) -> AsyncIterator[int]:
    proxies = DeploymentProxies("127.0.0.1")
    ports = await proxies.open(DEPLOYMENT, (8080,), SECRET)
    proxies.route(DEPLOYMENT, {"8080": container.port})
    yield ports["8080"]
    await proxies.aclose()


async def test_the_proxy_relays_each_chunk_as_the_container_writes_it(
    proxy: int, container: GatedContainer
) -> None:
    headers = sign(SECRET, "POST", "/generate", "t1")
    async with (
        httpx.AsyncClient(trust_env=False, timeout=30) as http,
        http.stream(
            "POST", f"http://127.0.0.1:{proxy}/generate", content=b"{}", headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        chunks = response.aiter_raw()
        received = b""
        while len(received) < len(container.first):
            received += await anext(chunks)
        assert received == container.first
        assert not container.finished  # still held at its gate
        container.gate.set()
        async for chunk in chunks:
            received += chunk
    assert received == container.first + container.rest
