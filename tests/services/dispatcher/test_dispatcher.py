"""The dispatcher against a real sample app process and a real embedded bus."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from events import TaskCompleted, TaskDispatched, TaskFailed, topics
from services.bus import EmbeddedBus, decode_record, publish_events
from services.dispatcher import CallPolicy, Dispatcher, OffsetTracker, call_node, target_url
from tests.services.sampleapp.helpers import free_port, sampleapp


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with sampleapp(env={"NGPU_NODE_ID": "node-a"}) as running:
        yield running


def _dispatch(
    port: int, path: str = "/img2img", body: str = '{"prompt": "a cat"}', attempt: int = 1,
    timeout_s: float = 10.0, task_id: str = "20240411_13_36_11_9221240001", **extra: object,
) -> TaskDispatched:  # fmt: skip
    return TaskDispatched(
        task_id=task_id, workspace_id="w", attempt=attempt,
        node_id="node-a", node_ip="127.0.0.1", node_address="0x" + "a" * 40,
        deployment_id="dep", host_port=port, param_url=path, request_body=body,
        timeout_s=timeout_s, gpu_type="RTX4090", gpu_count=2, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def _port(app: tuple[subprocess.Popen[bytes], str]) -> int:
    return int(app[1].rsplit(":", 1)[1])


async def test_a_call_passes_the_body_and_the_task_headers(app) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(client, _dispatch(_port(app), attempt=2), CallPolicy())
    assert isinstance(outcome, TaskCompleted) and outcome.status_code == 200
    answer = orjson.loads(outcome.response_body)
    assert answer["task_id"] == "20240411_13_36_11_9221240001" and answer["attempt"] == "2"
    assert answer["prompt_words"] == 2
    assert outcome.finished_at >= outcome.started_at
    assert (outcome.gpu_type, outcome.gpu_count, outcome.node_id) == ("RTX4090", 2, "node-a")


async def test_the_body_arrives_unchanged(app) -> None:  # type: ignore[no-untyped-def]
    body = '{"b": [1, 2], "a": "ünïcode", "z": null}'
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(client, _dispatch(_port(app), "/echo", body), CallPolicy())
    assert isinstance(outcome, TaskCompleted) and outcome.response_body == body


async def test_http_errors_of_the_container_are_passed_through(app) -> None:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(client, _dispatch(_port(app), "/fail?status=500"), CallPolicy())
    assert isinstance(outcome, TaskCompleted) and outcome.status_code == 500


@pytest.mark.parametrize(
    ("retry_on_timeout", "attempt", "retryable"),
    [(False, 1, False), (True, 1, True), (True, 3, False)],
)
async def test_a_timeout_is_terminal_unless_the_workspace_opted_in(  # type: ignore[no-untyped-def]
    app, retry_on_timeout: bool, attempt: int, retryable: bool
) -> None:
    dispatch = _dispatch(_port(app), "/sleep?ms=3000", timeout_s=0.3, attempt=attempt,
                         retry_on_timeout=retry_on_timeout)  # fmt: skip
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(client, dispatch, CallPolicy())
    assert isinstance(outcome, TaskFailed)
    assert (outcome.code, outcome.retryable) == ("timeout", retryable)


async def test_a_refusing_node_fails_retryably() -> None:
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(client, _dispatch(free_port()), CallPolicy())
    assert isinstance(outcome, TaskFailed)
    assert (outcome.code, outcome.retryable) == ("node_refused", True)


async def test_oversized_responses_fail_for_good(app) -> None:  # type: ignore[no-untyped-def]
    body = '"' + "x" * 5000 + '"'
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(
            client, _dispatch(_port(app), "/echo", body), CallPolicy(max_response_bytes=1024)
        )
    assert isinstance(outcome, TaskFailed)
    assert (outcome.code, outcome.retryable) == ("response_too_large", False)


def test_targets_are_the_dispatch_host_and_port_only() -> None:
    assert target_url(_dispatch(8080, "/a?b=1")) == "http://127.0.0.1:8080/a?b=1"
    v6 = TaskDispatched("t", "w", 1, "n", "::1", "0x", "d", 9000, param_url="/x")
    assert target_url(v6) == "http://[::1]:9000/x"


def test_offsets_commit_below_the_oldest_unfinished_call() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.started("t", 0, offset)
    tracker.finished("t", 0, 0)
    tracker.finished("t", 0, 2)
    assert tracker.committable() == {("t", 0): 1}
    tracker.finished("t", 0, 1)
    assert tracker.committable() == {("t", 0): 3}
    tracker.finished("t", 0, 3)
    tracker.finished("t", 0, 4)
    assert tracker.committable() == {("t", 0): 5} and tracker.in_flight == 0


async def test_the_worker_publishes_outcomes_and_commits_after_them(  # type: ignore[no-untyped-def]
    app, tmp_path: Path
) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", poll_interval_s=0.05) as bus:
        dispatcher = Dispatcher(bus, CallPolicy())
        running = asyncio.create_task(dispatcher.run())
        await publish_events(
            bus, [_dispatch(_port(app)), _dispatch(free_port(), task_id="20240411_13_36_11_2")]
        )

        async def outcomes() -> list[object]:
            events = [decode_record(r).event async for r in bus.replay([topics.TASKS])]
            return [e for e in events if isinstance(e, TaskCompleted | TaskFailed)]

        async with asyncio.timeout(30):
            while len(await outcomes()) < 2:  # noqa: ASYNC110 - polling the log
                await asyncio.sleep(0.05)
        kinds = sorted(type(e).__name__ for e in await outcomes())
        assert kinds == ["TaskCompleted", "TaskFailed"]
        async with asyncio.timeout(10):
            while dispatcher.tracker.in_flight:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.7)  # one more fetch round commits
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        # A new member of the group has nothing left to do: every call was committed.
        async with bus.consumer([topics.TASKS], group="dispatcher") as consumer:
            left = [r for r in await consumer.fetch(100, timeout_s=0.2)
                    if isinstance(decode_record(r).event, TaskDispatched)]  # fmt: skip
        assert left == []


async def test_bytes_that_are_not_utf8_travel_as_base64(app) -> None:  # type: ignore[no-untyped-def]
    raw = b"\xff\xfe\x00binary"
    dispatch = _dispatch(
        _port(app), "/echo", base64.b64encode(raw).decode(), body_encoding="base64",
        content_type="application/octet-stream",
    )  # fmt: skip
    async with aiohttp.ClientSession() as client:
        outcome = await call_node(client, dispatch, CallPolicy())
    assert isinstance(outcome, TaskCompleted) and outcome.body_encoding == "base64"
    assert base64.b64decode(outcome.response_body) == raw


async def test_a_second_dispatch_of_the_same_attempt_is_not_called(  # type: ignore[no-untyped-def]
    app, tmp_path: Path
) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", poll_interval_s=0.05) as bus:
        dispatcher = Dispatcher(bus, CallPolicy())
        running = asyncio.create_task(dispatcher.run())
        once = _dispatch(_port(app), "/echo", '"once"')
        stored = await publish_events(bus, [once, once, _dispatch(_port(app), attempt=2)])
        last = stored[-1]
        handled = (last.topic, last.partition)
        async with asyncio.timeout(30):  # hang guard: until all three records are handled
            while dispatcher.tracker.committable().get(handled, 0) <= last.offset:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        events = [decode_record(r).event async for r in bus.replay([topics.TASKS])]
        attempts = [e.attempt for e in events if isinstance(e, TaskCompleted)]
        assert sorted(attempts) == [1, 2]
