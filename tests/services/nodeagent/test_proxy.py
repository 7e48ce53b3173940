"""The agent's authenticating proxy: only calls signed with the deployment's secret reach
the container; everything else gets 401 and the container sees nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest
from aiohttp import web

from events import TaskCompleted, TaskDispatched, TaskFailed
from services.callsign import PROXY_ERROR_HEADER, deployment_secret, sign
from services.dispatcher.call import CallPolicy, call_node
from services.nodeagent.proxy import DeploymentProxies

KEY = b"k" * 32
DEPLOYMENT = "dep-1"
SECRET = deployment_secret(KEY, DEPLOYMENT)


@dataclass
class Container:
    port: int
    seen: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
async def container() -> AsyncIterator[Container]:
    """A stand-in for the deployment, on loopback, recording every request it gets."""
    box: list[Container] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        box[0].seen.append((request.method, request.raw_path, body, dict(request.headers)))
        if request.path == "/stream":
            response = web.StreamResponse(status=200)
            await response.prepare(request)
            for part in (b"a" * 70_000, b"b" * 10):
                await response.write(part)
            await response.write_eof()
            return response
        headers = {PROXY_ERROR_HEADER: "forged", "X-App": "1"}
        return web.json_response({"echo": body.decode(), "path": request.raw_path},
                                 status=201, headers=headers)  # fmt: skip

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.append(Container(int(runner.addresses[0][1])))
    yield box[0]
    await runner.cleanup()


@pytest.fixture
async def proxy(container: Container) -> AsyncIterator[int]:
    proxies = DeploymentProxies("127.0.0.1")
    ports = await proxies.open(DEPLOYMENT, (8080,), SECRET)
    proxies.route(DEPLOYMENT, {"8080": container.port})
    assert ports["8080"] != container.port
    yield ports["8080"]
    await proxies.aclose()


PATH = "/v1/run?x=1"


# Headers are made when the test runs (not at collection): a signature's time counts.
@pytest.mark.parametrize(
    "make_headers",
    [
        lambda: {},
        lambda: {
            "X-NGPU-Task-ID": "t1",
            "X-NGPU-Timestamp": str(int(time.time())),
            "X-NGPU-Signature": "0" * 64,
        },
        lambda: sign(SECRET, "POST", PATH, "t1", now=time.time() - 120),  # expired
        lambda: sign(SECRET, "POST", PATH, "t1", now=time.time() + 120),  # from the future
        lambda: sign(SECRET, "POST", "/v1/other", "t1"),  # signed for another path
        lambda: sign(SECRET, "GET", PATH, "t1"),  # for another method
        lambda: sign(deployment_secret(KEY, "dep-2"), "POST", PATH, "t1"),  # another deployment
        lambda: sign(deployment_secret(b"x" * 32, DEPLOYMENT), "POST", PATH, "t1"),  # key
        lambda: {**sign(SECRET, "POST", PATH, "t1"), "X-NGPU-Task-ID": "t2"},  # another task
    ],
    ids=["none", "bad", "expired", "future", "path", "method", "deployment", "key", "task"],
)
async def test_unsigned_or_badly_signed_calls_never_reach_the_container(
    proxy: int, container: Container, make_headers: Callable[[], dict[str, str]]
) -> None:
    headers = make_headers()
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(f"http://127.0.0.1:{proxy}{PATH}", content=b"{}",
                                   headers=headers)  # fmt: skip
    assert response.status_code == 401
    assert response.headers[PROXY_ERROR_HEADER] == "unauthorized"
    assert container.seen == []


async def test_a_signed_call_goes_through(proxy: int, container: Container) -> None:
    headers = {**sign(SECRET, "POST", PATH, "t1"), "Content-Type": "application/json"}
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(f"http://127.0.0.1:{proxy}{PATH}", content=b'{"a":1}',
                                   headers=headers)  # fmt: skip
    assert response.status_code == 201
    assert response.json() == {"echo": '{"a":1}', "path": PATH}
    assert response.headers["X-App"] == "1"
    assert PROXY_ERROR_HEADER not in response.headers  # the container cannot forge it
    ((method, path, body, seen_headers),) = container.seen
    assert (method, path, body) == ("POST", PATH, b'{"a":1}')
    assert seen_headers["X-NGPU-Task-ID"] == "t1"
    assert "X-NGPU-Signature" not in seen_headers  # the secret's product stays at the proxy


async def test_a_streamed_answer_is_relayed_whole(proxy: int, container: Container) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(
            f"http://127.0.0.1:{proxy}/stream", headers=sign(SECRET, "GET", "/stream", "t1")
        )
    assert response.status_code == 200
    assert response.content == b"a" * 70_000 + b"b" * 10


def _dispatch(port: int, **fields: object) -> TaskDispatched:
    values: dict[str, object] = {
        "task_id": "t1", "workspace_id": "12345678901234567890", "attempt": 1,
        "node_id": "node-1", "node_ip": "127.0.0.1", "node_address": "0x",
        "deployment_id": DEPLOYMENT, "host_port": port, "param_url": PATH,
        "request_body": '{"a":1}', "timeout_s": 10.0,
    }  # fmt: skip
    values.update(fields)
    return TaskDispatched(**values)  # type: ignore[arg-type]


async def test_the_dispatcher_signs_its_calls(proxy: int, container: Container) -> None:
    async with aiohttp.ClientSession() as session:
        outcome = await call_node(session, _dispatch(proxy), CallPolicy(call_key=KEY))
        assert isinstance(outcome, TaskCompleted), outcome
        assert outcome.status_code == 201 and '{\\"a\\":1}' in outcome.response_body
        # Without the key the proxy refuses, and that is a failed attempt, not an answer.
        refused = await call_node(session, _dispatch(proxy, attempt=2), CallPolicy())
    assert isinstance(refused, TaskFailed) and refused.code == "node_refused" and refused.retryable
    assert len(container.seen) == 1


async def test_a_dead_container_is_a_retryable_failure(container: Container) -> None:
    proxies = DeploymentProxies("127.0.0.1")
    ports = await proxies.open(DEPLOYMENT, (8080,), SECRET)
    proxies.route(DEPLOYMENT, {"8080": 1})  # nothing listens on port 1
    try:
        async with aiohttp.ClientSession() as session:
            outcome = await call_node(session, _dispatch(ports["8080"]), CallPolicy(call_key=KEY))
    finally:
        await proxies.aclose()
    assert isinstance(outcome, TaskFailed) and outcome.retryable
    assert "upstream-unreachable" in outcome.reason


async def test_a_closed_deployment_stops_listening(container: Container) -> None:
    proxies = DeploymentProxies("127.0.0.1")
    ports = await proxies.open(DEPLOYMENT, (8080,), SECRET)
    assert await proxies.open(DEPLOYMENT, (8080,), SECRET) == ports  # idempotent
    await proxies.close(DEPLOYMENT)
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{ports['8080']}/")
    await proxies.aclose()
