"""The dispatcher's spans against a real sample app and a real embedded bus: a `dispatch`
span whose parent is the dispatch's trace, a `POST` client span whose context reaches the
container as `traceparent`, and the outcome published in its trace; with traces off, no
header and no trace. The SDK's in-memory exporter collects the spans."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from events import Envelope, TaskCompleted, TaskFailed, TraceContext, is_terminal, topics
from services.bus import EmbeddedBus, decode_record, publish_events
from services.dispatcher import CallPolicy, Dispatcher, call_node
from tests.services.dispatcher.test_dispatcher import _dispatch
from tests.services.sampleapp.helpers import free_port, sampleapp
from tests.support.traces import hex_ids, named, spans  # noqa: F401

DISPATCHED = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "rojo=00f067aa0ba902b7")  # fmt: skip


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with sampleapp() as (_, url):
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", poll_interval_s=0.05) as opened:
        yield opened


async def outcome_of(bus: EmbeddedBus, task_id: str) -> Envelope:
    dispatcher = Dispatcher(bus, CallPolicy())
    running = asyncio.create_task(dispatcher.run())
    try:
        async with asyncio.timeout(30):  # a hang guard
            while True:
                async for record in bus.replay([topics.TASKS]):
                    envelope = decode_record(record)
                    event = envelope.event
                    if is_terminal(event) and getattr(event, "task_id", "") == task_id:
                        return envelope
                await asyncio.sleep(0.05)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def _parent_of(span: ReadableSpan) -> str:
    assert span.parent is not None
    return format(span.parent.span_id, "016x")


async def test_one_trace_from_the_dispatch_to_the_container_and_the_outcome(
    bus: EmbeddedBus,
    app_port: int,
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    dispatch = _dispatch(app_port, "/headers", "{}", task_id="t-traced")
    await publish_events(bus, [Envelope(dispatch, trace=DISPATCHED)])
    outcome = await outcome_of(bus, "t-traced")

    (consumer,) = named(spans, "dispatch")
    (client,) = named(spans, "POST")
    (publish,) = named(spans, f"publish {topics.TASKS}")
    trace_id, parent_id = DISPATCHED.traceparent.split("-")[1:3]
    assert {hex_ids(s)[0] for s in (consumer, client, publish)} == {trace_id}
    assert consumer.kind is SpanKind.CONSUMER and _parent_of(consumer) == parent_id
    assert client.kind is SpanKind.CLIENT and _parent_of(client) == hex_ids(consumer)[1]
    assert publish.kind is SpanKind.PRODUCER and _parent_of(publish) == hex_ids(consumer)[1]
    assert consumer.attributes is not None and client.attributes is not None
    assert consumer.attributes["ngpu.outcome"] == "TaskCompleted"
    assert client.attributes["http.response.status_code"] == 200
    assert client.attributes["server.port"] == app_port

    # The container received the client span's context, the tracestate included.
    event = outcome.event
    assert isinstance(event, TaskCompleted)
    received = orjson.loads(event.response_body)["headers"]
    assert received["traceparent"][3:-3] == "-".join(hex_ids(client))
    assert received["tracestate"] == DISPATCHED.tracestate
    # The outcome carries the trace on (the publish span's context).
    assert outcome.trace is not None
    assert outcome.trace.traceparent[3:-3] == "-".join(hex_ids(publish))


async def test_a_failed_call_is_an_error_of_the_client_span(
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    async with aiohttp.ClientSession() as session:
        outcome = await call_node(session, _dispatch(free_port()), CallPolicy())
    assert isinstance(outcome, TaskFailed)
    (client,) = named(spans, "POST")
    assert client.status.status_code is StatusCode.ERROR
    assert client.status.description is None  # what a node said stays out of the trace
    assert client.attributes is not None and client.attributes["error.type"] == "node_refused"
    assert client.parent is None  # no span was current: a trace of its own


async def test_with_traces_off_the_container_gets_no_traceparent(
    bus: EmbeddedBus, app_port: int
) -> None:
    dispatch = _dispatch(app_port, "/headers", "{}", task_id="t-off")
    await publish_events(bus, [Envelope(dispatch, trace=DISPATCHED)])
    outcome = await outcome_of(bus, "t-off")
    event = outcome.event
    assert isinstance(event, TaskCompleted)
    assert "traceparent" not in orjson.loads(event.response_body)["headers"]
    assert outcome.trace is None
