"""The scheduler carries a task's trace forward: its `TaskDispatched` in a `schedule` span
whose parent is the context the task's wait began under (its submission, or the failed
attempt it is retried after), its other decisions with that context; with traces off,
nothing. On the embedded log, with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from events import Envelope, TaskCancelRequested, TaskDispatched, TaskRetried, TraceContext, topics
from services.bus import EmbeddedBus, decode_record, publish_events
from services.scheduler.runner import SchedulerRunner
from services.settings import Settings
from tests.services.scheduler.builders import (
    completed,
    dispatched,
    failed,
    submitted,
    workspace_registered,
)
from tests.services.scheduler.test_faust_scheduler import ready_replica
from tests.support.traces import hex_ids, named, spans  # noqa: F401

SUBMITTED = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
FAILED = TraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01")


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    async with EmbeddedBus(tmp_path / "bus.sqlite3", poll_interval_s=0.05) as opened:
        yield opened


@contextlib.asynccontextmanager
async def running(bus: EmbeddedBus, tmp_path: Path) -> AsyncIterator[SchedulerRunner]:
    settings = Settings(data_dir=tmp_path, scheduler_tick_s=0.05, node_lost_after_s=3600)
    runner = SchedulerRunner(bus, settings)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def first(bus: EmbeddedBus, match: Callable[[Envelope], bool]) -> Envelope:
    """The first envelope of the log `match` accepts, once there is one (a hang guard)."""
    async with asyncio.timeout(30):
        while True:
            async for record in bus.replay(topics.ALL_TOPICS):
                envelope = decode_record(record)
                if match(envelope):
                    return envelope
            await asyncio.sleep(0.05)


def dispatch_of(task_id: str, attempt: int) -> Callable[[Envelope], bool]:
    def match(envelope: Envelope) -> bool:
        event = envelope.event
        return (isinstance(event, TaskDispatched) and event.task_id == task_id
                and event.attempt == attempt)  # fmt: skip

    return match


def _parent_hex(trace: TraceContext) -> str:
    return trace.traceparent.split("-")[2]


async def test_a_dispatch_is_a_schedule_span_in_the_submissions_trace(
    bus: EmbeddedBus,
    tmp_path: Path,
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    await publish_events(bus, [
        workspace_registered("ws", replicas_min=2, replicas_max=2, concurrency=4),
        *ready_replica("n1", "ws"), *ready_replica("n2", "ws"),
        Envelope(submitted("t1", "ws"), trace=SUBMITTED),
        submitted("untraced", "ws"),
    ])  # fmt: skip
    async with running(bus, tmp_path):
        first_dispatch = await first(bus, dispatch_of("t1", 1))
        untraced = await first(bus, dispatch_of("untraced", 1))
        (schedule,) = [s for s in named(spans, "schedule")
                       if s.attributes and s.attributes["ngpu.task_id"] == "t1"]  # fmt: skip
        trace_id, span_id = hex_ids(schedule)
        assert trace_id == SUBMITTED.traceparent.split("-")[1]
        assert schedule.parent is not None
        assert format(schedule.parent.span_id, "016x") == _parent_hex(SUBMITTED)
        assert first_dispatch.trace is not None
        assert first_dispatch.trace.traceparent[3:-3] == f"{trace_id}-{span_id}"
        assert schedule.attributes is not None
        assert schedule.attributes["ngpu.node_id"] == first_dispatch.event.node_id  # type: ignore[attr-defined]
        assert schedule.start_time is not None and schedule.end_time is not None
        assert schedule.start_time <= schedule.end_time

        # A task submitted without a trace is scheduled in a trace of its own.
        assert untraced.trace is not None
        assert untraced.trace.traceparent.split("-")[1] != trace_id

        # The failed attempt's context is carried by the retry and parents the next span.
        dispatched = first_dispatch.event
        assert isinstance(dispatched, TaskDispatched)
        await publish_events(bus, [Envelope(failed(dispatched), trace=FAILED)])
        retried = await first(bus, lambda e: isinstance(e.event, TaskRetried))
        assert retried.trace == FAILED
        second = await first(bus, dispatch_of("t1", 2))
    assert second.trace is not None
    (again,) = [s for s in named(spans, "schedule")
                if s.attributes and s.attributes["ngpu.attempt"] == 2]  # fmt: skip
    assert again.parent is not None
    assert format(again.parent.span_id, "016x") == _parent_hex(FAILED)
    assert second.trace.traceparent[3:-3] == "-".join(hex_ids(again))


async def test_with_traces_off_the_scheduler_carries_nothing(
    bus: EmbeddedBus, tmp_path: Path
) -> None:
    await publish_events(bus, [
        workspace_registered("ws", replicas_min=0), *ready_replica("n1", "ws"),
        Envelope(submitted("t1", "ws"), trace=SUBMITTED),
    ])  # fmt: skip
    async with running(bus, tmp_path) as runner:
        dispatched = await first(bus, dispatch_of("t1", 1))
        assert runner._traces == {}
    assert dispatched.trace is None


async def test_a_cancel_after_the_end_or_of_no_task_leaves_no_trace_behind(
    bus: EmbeddedBus,
    tmp_path: Path,
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    # A cancel checked against a view that lagged can reach the log after the task's end;
    # a late retryable failure too. Neither may leave a context for a task never to come.
    first_try = dispatched("t1", "ws", "n1", "d-1")
    await publish_events(bus, [
        workspace_registered("ws", replicas_min=0),
        Envelope(submitted("t1", "ws"), trace=SUBMITTED), first_try, completed(first_try),
        Envelope(TaskCancelRequested(task_id="t1", workspace_id="ws"), trace=SUBMITTED),
        Envelope(failed(first_try), trace=FAILED),
        Envelope(TaskCancelRequested(task_id="never", workspace_id="ws"), trace=SUBMITTED),
        Envelope(submitted("t2", "ws"), trace=SUBMITTED),
    ])  # fmt: skip
    runner = SchedulerRunner(bus, Settings(data_dir=tmp_path))
    runner._fold([record async for record in bus.replay(topics.ALL_TOPICS)])
    assert set(runner._traces) == {"t2"}  # the one task still waiting
