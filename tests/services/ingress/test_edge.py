"""The HTTP edge's limits, on uvicorn as `server_config` builds it: slow heads and bodies
are cut off, oversized heads refused, connections capped; normal calls go on meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from services.ingress import server_config
from services.settings import Settings


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/call")
    async def call(body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.01)  # a call that takes a moment, like a sync task
        return {"echo": body}

    return app


@asynccontextmanager
async def _serving(tmp_path: Path, **limits: Any) -> AsyncIterator[int]:
    config = server_config(_app(), Settings(data_dir=tmp_path, host="127.0.0.1", **limits))
    config.port = 0
    config.log_level = "warning"
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await serving


async def _trickle(port: int, head: bytes, drip: bytes) -> bytes:
    """Send `head`, then `drip` every 0.2 s until the server closes the connection;
    return what the server sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(head)
        while True:
            try:
                writer.write(drip)
                await writer.drain()
                async with asyncio.timeout(0.2):
                    data = await reader.read(65536)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                return received
            if not data:
                return received
            received += data
    finally:
        writer.close()


async def test_slowloris_connections_are_closed_while_normal_calls_succeed(
    tmp_path: Path,
) -> None:
    async with _serving(tmp_path, http_header_timeout_s=3) as port:
        slow = [
            asyncio.create_task(
                _trickle(port, b"POST /call HTTP/1.1\r\nHost: t\r\n", b"X-Slow: 1\r\n")
            )
            for _ in range(100)
        ]
        await asyncio.sleep(0.3)  # every trickler has connected and is dripping
        assert not any(task.done() for task in slow)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            async with asyncio.timeout(30):  # a hang guard, not a latency bound
                answers = await asyncio.gather(
                    *(http.post("/call", json={"n": n}) for n in range(20))
                )
        assert [a.status_code for a in answers] == [200] * 20
        assert [a.json() for a in answers] == [{"echo": {"n": n}} for n in range(20)]
        async with asyncio.timeout(60):  # the server closes every trickling connection
            sent = await asyncio.gather(*slow)
        assert sent == [b""] * 100  # closed without an answer: no request was read


async def test_a_body_that_stops_arriving_is_cut_off(tmp_path: Path) -> None:
    head = b"POST /call HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    async with _serving(tmp_path, http_body_timeout_s=1) as port:
        async with asyncio.timeout(30):
            # Announces 1,000 bytes, then sends one space every 0.2 s.
            await _trickle(port, head + b"Content-Length: 1000\r\n\r\n{", b" ")


async def test_an_oversized_head_is_refused(tmp_path: Path) -> None:
    async with _serving(tmp_path, http_max_header_bytes=4096) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            small = await http.post("/call", json={}, headers={"X-Pad": "a" * 1000})
            assert small.status_code == 200
            async with asyncio.timeout(30):
                sent = await _trickle(port, b"GET /call HTTP/1.1\r\nHost: t\r\n", b"X-Pad: " +
                                      b"a" * 1000 + b"\r\n")  # fmt: skip
        assert sent.startswith(b"HTTP/1.1 431 ")


async def test_connections_beyond_the_cap_are_answered_503(tmp_path: Path) -> None:
    async with _serving(tmp_path, http_max_connections=10) as port:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                refused = await http.post("/call", json={})
            assert refused.status_code == 503
        finally:
            for _, writer in idle:
                writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async with asyncio.timeout(30):
                while (await http.post("/call", json={})).status_code != 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
