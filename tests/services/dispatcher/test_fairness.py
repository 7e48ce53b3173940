"""Fair dispatch: a workspace whose container hangs holds only its own calls; another
workspace's dispatches are called meanwhile (a real embedded bus, real local HTTP servers,
the real `Dispatcher`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from events import TaskCompleted, TaskDispatched, TaskFailed, topics
from services.bus import EmbeddedBus, decode_record, publish_events
from services.dispatcher import CallPolicy, Dispatcher

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _server(handler: Handler) -> AsyncIterator[int]:
    """A local HTTP server answering every path with `handler`; yields its port."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    try:
        yield server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    finally:
        await runner.cleanup()


def _dispatch(workspace: str, number: int, port: int) -> TaskDispatched:
    return TaskDispatched(
        task_id=f"20240411_13_36_11_{workspace}{number:04d}", workspace_id=workspace,
        attempt=1, node_id=f"node-{workspace}", node_ip="127.0.0.1",
        node_address="0x" + "a" * 40, deployment_id=f"dep-{workspace}", host_port=port,
        param_url="/run", request_body="{}", timeout_s=600.0,
    )  # fmt: skip


async def test_a_hung_workspace_does_not_delay_another(tmp_path: Path) -> None:
    release = asyncio.Event()
    hung: set[str] = set()

    async def hang(request: web.Request) -> web.Response:
        hung.add(request.headers["X-NGPU-Task-ID"])
        await release.wait()
        return web.json_response({})

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async with (
        EmbeddedBus(tmp_path / "bus.sqlite3", poll_interval_s=0.05) as bus,
        _server(hang) as port_a,
        _server(answer) as port_b,
    ):
        dispatcher = Dispatcher(bus, CallPolicy(), max_concurrency=8)
        running = asyncio.create_task(dispatcher.run())
        try:
            # Workspace A: 300 dispatches into a container that never answers.
            await publish_events(bus, [_dispatch("a", n, port_a) for n in range(300)])
            async with asyncio.timeout(30):
                while len(hung) < 8:  # noqa: ASYNC110 - polling the server's view
                    await asyncio.sleep(0.02)
            # Workspace B's calls arrive behind A's in the log and are answered at once.
            b_tasks = [_dispatch("b", n, port_b) for n in range(20)]
            await publish_events(bus, b_tasks)

            async def outcomes() -> list[TaskCompleted | TaskFailed]:
                events = [decode_record(r).event async for r in bus.replay([topics.TASKS])]
                return [e for e in events if isinstance(e, TaskCompleted | TaskFailed)]

            async with asyncio.timeout(30):  # a hang guard, not a latency bound
                while len(await outcomes()) < len(b_tasks):  # noqa: ASYNC110 - polling the log
                    await asyncio.sleep(0.05)
            done = await outcomes()
            assert sorted(e.task_id for e in done) == sorted(t.task_id for t in b_tasks)
            assert all(isinstance(e, TaskCompleted) and e.status_code == 200 for e in done)
            # A never held more than its share: the rest of its dispatches wait their turn.
            assert len(hung) == 8 and not release.is_set()
            # Once A's container answers, its waiting dispatches are called, in turn.
            release.set()
            async with asyncio.timeout(60):
                while len(await outcomes()) < 300 + len(b_tasks):  # noqa: ASYNC110 - the log
                    await asyncio.sleep(0.1)
            assert len(hung) == 300
        finally:
            release.set()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
