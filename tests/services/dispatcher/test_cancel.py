"""Cancels in the dispatcher: a `TaskCancelRequested` aborts the call in flight (the
container sees its connection closed) and ends the task with `TaskCancelled`; a dispatch
of a cancelled task is never called; an outcome the call returned first wins. A real
sample app process, a real embedded bus (one partition, so the log's order is global),
the real `Dispatcher`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from events import (
    Event,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskDispatched,
    TaskFailed,
    topics,
)
from services.bus import EmbeddedBus, decode_record, publish_events
from services.dispatcher import CallPolicy, Dispatcher
from tests.services.sampleapp.helpers import sampleapp

GUARD_S = 20  # a hang guard: the held calls below last 60 s unless they are aborted


@pytest.fixture(scope="module")
def app() -> Iterator[str]:
    with sampleapp() as (_, base_url):
        yield base_url


def _dispatch(base_url: str, task_id: str, path: str = "/hold?ms=60000") -> TaskDispatched:
    return TaskDispatched(
        task_id=task_id, workspace_id="w", attempt=1, node_id="node-a", node_ip="127.0.0.1",
        node_address="0x" + "a" * 40, deployment_id="dep", param_url=path, request_body="{}",
        host_port=int(base_url.rsplit(":", 1)[1]), timeout_s=120.0,
    )  # fmt: skip


def _request(task_id: str) -> TaskCancelRequested:
    return TaskCancelRequested(task_id=task_id, workspace_id="w")


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", partitions=1, poll_interval_s=0.05) as bus:
        yield bus


async def _running(bus: EmbeddedBus, max_concurrency: int = 8) -> AsyncIterator[Dispatcher]:
    dispatcher = Dispatcher(bus, CallPolicy(), max_concurrency=max_concurrency)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _ends(bus: EmbeddedBus, task_id: str) -> list[Event]:
    events = [decode_record(r).event async for r in bus.replay([topics.TASKS])]
    kinds = TaskCompleted | TaskFailed | TaskCancelled
    return [e for e in events if isinstance(e, kinds) and e.task_id == task_id]


async def _until_ended(bus: EmbeddedBus, task_id: str) -> list[Event]:
    async with asyncio.timeout(GUARD_S):
        while not (ended := await _ends(bus, task_id)):  # noqa: ASYNC110 - polling the log
            await asyncio.sleep(0.05)
    return ended


async def _hold_of(base_url: str, task_id: str, state: str) -> None:
    """Wait until the sample app's `/hold` of `task_id` is in `state`."""
    async with (
        httpx.AsyncClient(base_url=base_url, trust_env=False) as http,
        asyncio.timeout(GUARD_S),
    ):
        while (await http.get("/holds")).json()["holds"].get(task_id) != state:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _calls_of(base_url: str, task_id: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False) as http:
        return int((await http.get("/calls")).json()["calls"].get(task_id, 0))


async def test_a_cancel_aborts_the_call_and_ends_the_task(app: str, bus: EmbeddedBus) -> None:
    async for dispatcher in _running(bus):
        await publish_events(bus, [_dispatch(app, "t-abort")])
        await _hold_of(app, "t-abort", "holding")
        await publish_events(bus, [_request("t-abort")])
        # The container sees its connection closed: the call is given up, not waited for.
        await _hold_of(app, "t-abort", "closed")
        assert await _until_ended(bus, "t-abort") == [
            TaskCancelled(task_id="t-abort", workspace_id="w", reason="cancelled by the caller")
        ]
        async with asyncio.timeout(GUARD_S):
            while dispatcher.tracker.in_flight:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.05)


async def test_a_dispatch_read_after_its_cancel_is_never_called(app: str, bus: EmbeddedBus) -> None:
    async for _ in _running(bus):
        await publish_events(bus, [_request("t-late"), _dispatch(app, "t-late")])
        (end,) = await _until_ended(bus, "t-late")
        assert isinstance(end, TaskCancelled)
        assert await _calls_of(app, "t-late") == 0


async def test_a_dispatch_waiting_for_a_call_slot_is_ended_at_once(
    app: str, bus: EmbeddedBus
) -> None:
    async for _ in _running(bus, max_concurrency=1):
        await publish_events(bus, [_dispatch(app, "t-busy"), _dispatch(app, "t-waiting")])
        await _hold_of(app, "t-busy", "holding")
        await publish_events(bus, [_request("t-waiting")])
        (end,) = await _until_ended(bus, "t-waiting")
        assert isinstance(end, TaskCancelled)
        assert await _calls_of(app, "t-waiting") == 0
        assert await _ends(bus, "t-busy") == []  # still held: only its own cancel ends it
        await publish_events(bus, [_request("t-busy")])
        await _hold_of(app, "t-busy", "closed")


async def test_an_outcome_returned_before_the_cancel_wins(app: str, bus: EmbeddedBus) -> None:
    async for _ in _running(bus):
        await publish_events(bus, [_dispatch(app, "t-done", "/img2img")])
        (end,) = await _until_ended(bus, "t-done")
        assert isinstance(end, TaskCompleted)
        # The late request, then a task cancelled while it runs: once that one ends, the
        # late request was read too (one partition: the dispatcher reads in log order).
        await publish_events(bus, [_request("t-done"), _dispatch(app, "t-next")])
        await _hold_of(app, "t-next", "holding")
        await publish_events(bus, [_request("t-next")])
        (cancelled,) = await _until_ended(bus, "t-next")
        assert isinstance(cancelled, TaskCancelled)
        assert await _ends(bus, "t-done") == [end]
