"""The agent's authenticating proxy: only calls signed with the deployment's secret reach
the container; everything else gets 401 and the container sees nothing. Over TLS, the
dispatcher accepts only the certificate the node registered."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import aiohttp
import httpx
import pytest
from aiohttp import web

from events import TaskCompleted, TaskDispatched, TaskFailed
from services.callsign import PROXY_ERROR_HEADER, ReplayGuard, deployment_secret, sign
from services.certs import proxy_certificate
from services.dispatcher.call import CallPolicy, call_node
from services.nodeagent.proxy import DeploymentProxies
from tests.services.sampleapp.helpers import sampleapp

KEY = b"k" * 32
DEPLOYMENT = "dep-1"
SECRET = deployment_secret(KEY, DEPLOYMENT)
CERT, OTHER = proxy_certificate(), proxy_certificate()  # the registered one, and another


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


def _without_nonce(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != "X-NGPU-Nonce"}


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
        lambda: {**sign(SECRET, "POST", PATH, "t1"), "X-NGPU-Nonce": "0" * 32},  # nonce
        lambda: _without_nonce(sign(SECRET, "POST", PATH, "t1")),
    ],
    ids=[
        "none",
        "bad",
        "expired",
        "future",
        "path",
        "method",
        "deployment",
        "key",
        "task",
        "nonce",
        "no-nonce",
    ],
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


async def test_a_replayed_call_never_reaches_the_container(
    proxy: int, container: Container
) -> None:
    """A signed call captured on the way (within its 30 s window) and sent again is refused."""
    headers = sign(SECRET, "POST", PATH, "t1")
    async with httpx.AsyncClient(trust_env=False) as http:
        url = f"http://127.0.0.1:{proxy}{PATH}"
        first = await http.post(url, content=b"{}", headers=headers)
        again = await http.post(url, content=b"{}", headers=headers)
        fresh = await http.post(url, content=b"{}", headers=sign(SECRET, "POST", PATH, "t1"))
    assert (first.status_code, again.status_code, fresh.status_code) == (201, 401, 201)
    assert again.headers[PROXY_ERROR_HEADER] == "unauthorized"
    assert len(container.seen) == 2


def test_the_replay_guard_forgets_nonces_once_their_window_has_passed() -> None:
    guard = ReplayGuard(max_skew_s=30)
    headers = sign(SECRET, "POST", PATH, "t1")
    assert guard.first_use(headers, now=1000.0)
    assert not guard.first_use(headers, now=1059.0)
    assert guard.first_use(sign(SECRET, "POST", PATH, "t1"), now=1059.5)
    assert len(guard) == 2
    assert guard.first_use(headers, now=1060.0)  # verify refuses its timestamp by then
    assert len(guard) == 2  # the first two were forgotten, this one remembered


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


async def test_a_caller_that_hangs_up_closes_the_call_to_the_container() -> None:
    # What a cancelled task's aborted call does: the container sees its connection closed.
    with sampleapp() as (_, base_url):
        proxies = DeploymentProxies("127.0.0.1")
        ports = await proxies.open(DEPLOYMENT, (8080,), SECRET)
        proxies.route(DEPLOYMENT, {"8080": int(base_url.rsplit(":", 1)[1])})
        dispatch = _dispatch(ports["8080"], param_url="/hold?ms=60000", timeout_s=120.0)
        try:
            async with (
                aiohttp.ClientSession() as session,
                httpx.AsyncClient(base_url=base_url, trust_env=False) as app,
                asyncio.timeout(20),  # a hang guard: the hold lasts 60 s unless cut off
            ):
                call = asyncio.create_task(call_node(session, dispatch, CallPolicy(call_key=KEY)))
                while (await app.get("/holds")).json()["holds"].get("t1") != "holding":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                call.cancel()
                while (await app.get("/holds")).json()["holds"].get("t1") != "closed":  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            await proxies.aclose()


async def test_a_closed_deployment_stops_listening(container: Container) -> None:
    proxies = DeploymentProxies("127.0.0.1")
    ports = await proxies.open(DEPLOYMENT, (8080,), SECRET)
    assert await proxies.open(DEPLOYMENT, (8080,), SECRET) == ports  # idempotent
    await proxies.close(DEPLOYMENT)
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{ports['8080']}/")
    await proxies.aclose()


@pytest.fixture
async def tls_proxy(container: Container) -> AsyncIterator[int]:
    proxies = DeploymentProxies("127.0.0.1", tls=CERT.context)
    ports = await proxies.open(DEPLOYMENT, (8080,), SECRET)
    proxies.route(DEPLOYMENT, {"8080": container.port})
    yield ports["8080"]
    await proxies.aclose()


async def test_the_dispatcher_calls_a_tls_proxy_trusting_its_registered_certificate(
    tls_proxy: int, container: Container
) -> None:
    dispatch = _dispatch(tls_proxy, proxy_cert_sha256=CERT.sha256)
    async with aiohttp.ClientSession() as session:
        outcome = await call_node(session, dispatch, CallPolicy(call_key=KEY))
        again = await call_node(session, replace(dispatch, attempt=2), CallPolicy(call_key=KEY))
    assert isinstance(outcome, TaskCompleted), outcome
    assert isinstance(again, TaskCompleted), again
    assert outcome.status_code == 201 and len(container.seen) == 2


async def test_the_registered_certificate_is_a_trust_anchor_of_its_own(
    tls_proxy: int, container: Container
) -> None:
    # Self-signed and CA:TRUE: a client may also verify it as its only CA (no host name).
    context = ssl.create_default_context(cadata=CERT.pem)
    context.check_hostname = False
    async with httpx.AsyncClient(trust_env=False, verify=context) as http:
        signed = await http.post(f"https://127.0.0.1:{tls_proxy}{PATH}", content=b"{}",
                                 headers=sign(SECRET, "POST", PATH, "t1"))  # fmt: skip
    assert signed.status_code == 201
    other = ssl.create_default_context(cadata=OTHER.pem)
    other.check_hostname = False
    async with httpx.AsyncClient(trust_env=False, verify=other) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"https://127.0.0.1:{tls_proxy}/")


async def test_a_tls_proxy_takes_no_plain_http(tls_proxy: int, container: Container) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.TransportError):
            await http.post(f"http://127.0.0.1:{tls_proxy}{PATH}", content=b"{}",
                            headers=sign(SECRET, "POST", PATH, "t1"))  # fmt: skip
    assert container.seen == []


async def test_a_peer_with_another_certificate_never_gets_the_request() -> None:
    # A man in the middle at the node's address, with a certificate of its own (or the
    # registered one's PEM without its key, which TLS refuses anyway): the call fails as
    # the node's failure, before one byte of the request is sent.
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received.append(await reader.read())
        except (ConnectionError, ssl.SSLError):
            received.append(b"")
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0, ssl=OTHER.context)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            dispatch = _dispatch(port, proxy_cert_sha256=CERT.sha256, request_body="secret body")
            outcome = await call_node(session, dispatch, CallPolicy(call_key=KEY))
        async with asyncio.timeout(5):
            while not received:  # noqa: ASYNC110 - the server's handler runs apart
                await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()
    assert isinstance(outcome, TaskFailed), outcome
    assert outcome.code == "node_certificate_mismatch" and outcome.retryable
    assert received == [b""]
