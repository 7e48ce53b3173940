"""A dispatcher that starts reading a partition where another one stopped (a crash, a
rebalance) calls again what was in flight there, and nothing whose outcome is in the log.
On a real bus (embedded and Kafka) against a real local HTTP server counting calls."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from events import TaskCompleted, TaskDispatched, topics
from services.bus import Bus, EmbeddedBus, KafkaBus, Record, decode_record, publish_events
from services.dispatcher import CallPolicy, Dispatcher

QUICK = 60
HANG_GUARD_S = 60


@dataclass
class Node:
    """A container stand-in: `/quick` answers at once, `/slow` when `release` is set;
    `calls` counts the calls of each task id."""

    port: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def quick(self, request: web.Request) -> web.Response:
        self.calls[request.headers["X-NGPU-Task-ID"]] += 1
        return web.json_response({"ok": True})

    async def slow(self, request: web.Request) -> web.Response:
        self.calls[request.headers["X-NGPU-Task-ID"]] += 1
        await self.release.wait()
        return web.json_response({"slow": True})


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    fake = Node()
    app = web.Application()
    app.router.add_post("/quick", fake.quick)
    app.router.add_post("/slow", fake.slow)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    yield fake
    fake.release.set()
    await runner.cleanup()


@pytest.fixture(params=["embedded", "kafka"])
async def two_partitions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """A started bus whose topics have two partitions: the embedded log, or Kafka."""
    bus: Bus
    if request.param == "embedded":
        bus = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=2, poll_interval_s=0.05)
    else:
        broker = request.getfixturevalue("kafka_broker")
        bus = KafkaBus(broker.bootstrap, partitions=2, namespace=f"{uuid.uuid4().hex}.")
    await bus.start()
    yield bus
    await bus.close()


def _dispatch(task_id: str, port: int, path: str) -> TaskDispatched:
    return TaskDispatched(
        task_id=task_id, workspace_id="w", attempt=1, node_id="n", node_ip="127.0.0.1",
        node_address="0x" + "a" * 40, deployment_id="d", host_port=port, param_url=path,
        timeout_s=HANG_GUARD_S,
    )  # fmt: skip


async def _wait(probe: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        while not probe():  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.05)


async def _completed(bus: Bus) -> Counter[str]:
    events = [decode_record(r).event async for r in bus.replay([topics.TASKS])]
    return Counter(e.task_id for e in events if isinstance(e, TaskCompleted))


async def _slow_then_quick(bus: Bus, node: Node) -> tuple[list[Record], list[str]]:
    """A slow task at the head of each partition, then `QUICK` quick ones behind them."""
    slow: list[Record] = []
    while len({r.partition for r in slow}) < 2:
        task_id = f"slow-{len(slow)}"
        slow += await publish_events(bus, [_dispatch(task_id, node.port, "/slow")])
    quick = [f"quick-{i}" for i in range(QUICK)]
    await publish_events(bus, [_dispatch(task_id, node.port, "/quick") for task_id in quick])
    return slow, quick


async def _all_completed_and_committed(
    bus: Bus, node: Node, dispatcher: Dispatcher, slow: list[Record], quick: list[str]
) -> None:
    """Until every quick task completed and the dispatcher committed what it could: its
    position stays at the slow task of each partition, still running."""
    async with asyncio.timeout(HANG_GUARD_S):
        while set(await _completed(bus)) != set(quick):  # noqa: ASYNC110 - polling the log
            await asyncio.sleep(0.05)
    stuck = {(topics.TASKS, p): min(r.offset for r in slow if r.partition == p) for p in (0, 1)}
    await _wait(lambda: dispatcher.tracker.committable() == stuck)
    await asyncio.sleep(1.0)  # a few commit rounds


async def _stop(running: asyncio.Task[None]) -> None:
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_restarted_dispatcher_calls_again_only_what_was_in_flight(
    two_partitions: Bus, node: Node
) -> None:
    bus = two_partitions
    first = Dispatcher(bus, CallPolicy())
    running = asyncio.create_task(first.run())
    records, quick = await _slow_then_quick(bus, node)
    slow = [r.key for r in records]
    await _all_completed_and_committed(bus, node, first, records, quick)
    assert all(node.calls[t] == 1 for t in slow)
    await _stop(running)  # a crash: the slow calls die, nothing more is committed

    second = Dispatcher(bus, CallPolicy())
    running = asyncio.create_task(second.run())
    try:
        await _wait(lambda: all(node.calls[t] == 2 for t in slow))
        await asyncio.sleep(1.0)  # room for any wrong call to show up
        assert {t: n for t, n in node.calls.items() if t in quick and n != 1} == {}
        node.release.set()
        async with asyncio.timeout(HANG_GUARD_S):
            while not set(slow) <= set(await _completed(bus)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        await _stop(running)
    assert all(node.calls[t] == 2 for t in slow)
    assert all(node.calls[t] == 1 for t in quick)


async def test_a_member_given_a_partition_calls_again_only_what_was_in_flight_there(
    two_partitions: Bus, node: Node
) -> None:
    bus = two_partitions
    first = Dispatcher(bus, CallPolicy())
    running = [asyncio.create_task(first.run())]
    try:
        records, quick = await _slow_then_quick(bus, node)
        slow = [r.key for r in records]
        await _all_completed_and_committed(bus, node, first, records, quick)
        # A second member joins: one partition moves to it, the first keeps calling.
        running.append(asyncio.create_task(Dispatcher(bus, CallPolicy()).run()))
        await _wait(lambda: sum(node.calls[t] for t in slow) > len(slow))
        await asyncio.sleep(1.0)  # room for any wrong call to show up
        assert {t: n for t, n in node.calls.items() if t in quick and n != 1} == {}
        assert sorted(node.calls[t] for t in slow)[-1] == 2
    finally:
        for task in running:
            await _stop(task)
