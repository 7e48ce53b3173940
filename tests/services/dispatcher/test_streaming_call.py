"""A dispatch with `stream` hands the container's chunks to its output sink as they are
read, through the node agent's proxy: the ingress's hub holds the first chunk while the
container still waits to write the rest; the whole body is still the `TaskCompleted`'s.
A dispatch without `stream`, or an error answer, hands nothing out; an attempt that
broke off after handing output out is not retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from events import TaskCompleted, TaskDispatched, TaskFailed
from services.callsign import deployment_secret
from services.dispatcher.call import CallPolicy, call_node
from services.ingress.outputhub import OutputHub
from services.nodeagent.proxy import DeploymentProxies
from services.output import OutputChunk

KEY = b"k" * 32
DEPLOYMENT = "dep-1"


@dataclass
class Container:
    port: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    accept: list[str] = field(default_factory=list)


@pytest.fixture
async def container() -> AsyncIterator[Container]:
    """`/gen`: one SSE event, then (once `gate` is set) another; `/fail`: 500 with a body;
    `/break`: one event, then (once `gate` is set) the connection is dropped."""
    box = Container()

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        box.accept.append(request.headers.get("Accept", ""))
        if request.path == "/fail":
            return web.Response(status=500, text="data: no\n\n")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        await box.gate.wait()
        if request.path == "/break":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(b"data: 2\n\n")
        await response.write_eof()
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
async def proxy(container: Container) -> AsyncIterator[int]:
    proxies = DeploymentProxies("127.0.0.1")
    ports = await proxies.open(DEPLOYMENT, (8080,), deployment_secret(KEY, DEPLOYMENT))
    proxies.route(DEPLOYMENT, {"8080": container.port})
    yield ports["8080"]
    await proxies.aclose()


def _dispatch(port: int, path: str, *, stream: bool = True) -> TaskDispatched:
    return TaskDispatched(
        task_id="t1", workspace_id="w", attempt=1, node_id="n", node_ip="127.0.0.1",
        node_address="0x", deployment_id=DEPLOYMENT, host_port=port, param_url=path,
        timeout_s=30.0, stream=stream,
    )  # fmt: skip


async def test_chunks_reach_the_hub_before_the_container_ends(
    proxy: int, container: Container
) -> None:
    hub = OutputHub()
    watch = hub.watch("t1")
    async with aiohttp.ClientSession() as session:
        call = asyncio.create_task(
            call_node(session, _dispatch(proxy, "/gen"), CallPolicy(call_key=KEY), hub)
        )
        first = await watch.next()
        assert first == OutputChunk("t1", 1, 0, b"data: 1\n\n", "text/event-stream")
        assert not call.done()  # the container is still held at its gate
        container.gate.set()
        outcome = await call
    assert isinstance(outcome, TaskCompleted), outcome
    assert outcome.response_body == "data: 1\n\ndata: 2\n\n"
    assert outcome.content_type == "text/event-stream"
    assert await watch.next() == OutputChunk("t1", 1, 1, b"data: 2\n\n")
    assert container.accept == ["text/event-stream"]  # the stream is asked of the container


@pytest.mark.parametrize(("path", "stream"), [("/gen", False), ("/fail", True)])
async def test_no_stream_asked_or_an_error_answer_hands_nothing_out(
    proxy: int, container: Container, path: str, stream: bool
) -> None:
    hub = OutputHub()
    watch = hub.watch("t1")
    container.gate.set()
    async with aiohttp.ClientSession() as session:
        dispatch = _dispatch(proxy, path, stream=stream)
        outcome = await call_node(session, dispatch, CallPolicy(call_key=KEY), hub)
    assert isinstance(outcome, TaskCompleted)
    hub.emit(OutputChunk("t1", 9, 0, b"marker"))
    assert (await watch.next()).attempt == 9  # nothing came before the marker


async def test_an_attempt_that_broke_off_after_handing_output_out_is_not_retried(
    proxy: int, container: Container
) -> None:
    hub = OutputHub()
    watch = hub.watch("t1")
    async with aiohttp.ClientSession() as session:
        call = asyncio.create_task(
            call_node(session, _dispatch(proxy, "/break"), CallPolicy(call_key=KEY), hub)
        )
        await watch.next()
        container.gate.set()
        outcome = await call
    assert isinstance(outcome, TaskFailed), outcome
    assert outcome.code == "node_error" and not outcome.retryable
