"""Decoding records: in-process consumers of the embedded bus share one decode per record.
Publishing: with traces on, events published in a span carry the trace."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from events import Envelope, TraceContext, WorkspaceDeleted
from events.topics import WORKSPACES
from services import tracing
from services.bus import EmbeddedBus, decode_record, publish_events
from tests.support.traces import hex_ids, named, spans  # noqa: F401


async def test_consumers_in_one_process_share_each_records_envelope(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3") as bus:
        first, second = bus.consumer([WORKSPACES]), bus.consumer([WORKSPACES])
        await first.start()
        await second.start()
        # Both wait for the commit (a fetch that runs before the commit's wake-up reads
        # the file instead, and gets records of its own).
        fetches = [asyncio.create_task(c.fetch(10, timeout_s=5)) for c in (first, second)]
        await asyncio.sleep(0.05)
        await publish_events(bus, [WorkspaceDeleted(workspace_id=f"w{i}") for i in range(5)])
        got_first, got_second = await asyncio.gather(*fetches)
        assert len(got_first) == len(got_second) == 5
        for a, b in zip(got_first, got_second, strict=True):
            assert a is b  # the embedded bus hands both the same record...
            assert decode_record(a) is decode_record(b)  # ...so it is decoded once
            assert decode_record(a).event.workspace_id == a.key
        await first.close()
        await second.close()


async def test_a_copy_and_a_large_record_are_decoded_afresh(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3") as bus:
        small, large = await publish_events(
            bus, [WorkspaceDeleted(workspace_id="w1"), WorkspaceDeleted(workspace_id="w" * 20_000)]
        )
    copy = replace(small)
    assert copy is not small and decode_record(copy) == decode_record(small)
    assert decode_record(copy) is not decode_record(small)
    assert decode_record(large) == decode_record(large)
    assert decode_record(large) is not decode_record(large)  # over 16 KiB: not kept


async def test_events_published_in_a_span_carry_a_publish_span_of_it(
    tmp_path: Path,
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    mine = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    async with EmbeddedBus(tmp_path / "bus.sqlite3") as bus:
        with tracing.span("request"):
            records = await publish_events(bus, [
                WorkspaceDeleted(workspace_id="w1"),
                Envelope(WorkspaceDeleted(workspace_id="w2")),
                Envelope(WorkspaceDeleted(workspace_id="w3"), trace=mine),
            ])  # fmt: skip
        outside = await publish_events(bus, [WorkspaceDeleted(workspace_id="w4")])
    (publish,) = named(spans, f"publish {WORKSPACES}")
    (request,) = named(spans, "request")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == span_id_of(request)
    assert publish.attributes is not None
    assert publish.attributes["messaging.batch.message_count"] == 3
    trace_id, span_id = hex_ids(publish)
    carried = [decode_record(r).trace for r in records]
    assert carried[0] == carried[1]
    assert carried[0] is not None and carried[0].traceparent[3:-3] == f"{trace_id}-{span_id}"
    assert carried[2] == mine  # an envelope's own trace is kept
    assert decode_record(outside[0]).trace is None  # no span current: no trace, no span
    assert len(spans.get_finished_spans()) == 2


async def test_with_traces_off_no_envelope_carries_one(tmp_path: Path) -> None:
    provider = TracerProvider()  # a span current, but not through services.tracing
    async with EmbeddedBus(tmp_path / "bus.sqlite3") as bus:
        with provider.get_tracer("t").start_as_current_span("elsewhere"):
            (record,) = await publish_events(bus, [WorkspaceDeleted(workspace_id="w1")])
    assert decode_record(record).trace is None
    assert b'"trace"' not in record.value


def span_id_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id
