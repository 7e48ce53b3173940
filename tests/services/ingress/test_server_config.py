"""How uvicorn serves the ingress: the caller's IP is ours to decide, not uvicorn's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request

from services.ingress import server_config
from services.settings import Settings


async def test_x_forwarded_for_from_loopback_does_not_replace_the_peer(tmp_path: Path) -> None:
    # uvicorn's default believes X-Forwarded-For from 127.0.0.1; with NGPU_TRUSTED_PROXIES
    # empty, the recorded user IP must stay the TCP peer.
    app = FastAPI()

    @app.get("/peer")
    async def peer(request: Request) -> dict[str, str]:
        assert request.client is not None
        return {"peer": request.client.host}

    config = server_config(app, Settings(data_dir=tmp_path, host="127.0.0.1"))
    config.port = 0
    config.log_level = "warning"
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(trust_env=False) as http:
        answer = await http.get(f"http://127.0.0.1:{port}/peer",
                                headers={"X-Forwarded-For": "6.6.6.6"})  # fmt: skip
    server.should_exit = True
    await serving
    assert answer.json() == {"peer": "127.0.0.1"}
