"""`/metrics` on the ingress: the admin token, or no token with `NGPU_METRICS_PUBLIC`."""

from __future__ import annotations

import asyncio

import httpx
import uvicorn

from services.ingress import IngressContext, create_app
from services.settings import Settings
from tests.services.ingress.conftest import ADMIN, ControlPlane


async def test_the_admin_token_is_required(control_plane: ControlPlane) -> None:
    assert (await control_plane.http.get("/metrics")).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (await control_plane.http.get("/metrics", headers=wrong)).status_code == 401
    answer = await control_plane.http.get("/metrics", headers=control_plane.admin())
    assert answer.status_code == 200
    assert 'ngpu_nodes{state="healthy"} 0.0' in answer.text
    assert "ngpu_http_requests_total" in answer.text


async def test_public_metrics_need_no_token(control_plane: ControlPlane) -> None:
    settings = Settings(data_dir=control_plane.context.settings.data_dir, metrics_public=True)
    context = IngressContext(
        settings, control_plane.bus, control_plane.context.follower, ADMIN, "join"
    )
    config = uvicorn.Config(create_app(context), host="127.0.0.1", port=0, lifespan="off",
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answer = await http.get("/metrics")
            assert answer.status_code == 200
            assert "ngpu_http_requests_total" in answer.text
            assert (await http.get("/readyz")).json() == {"ready": True}
    finally:
        server.should_exit = True
        await serving
