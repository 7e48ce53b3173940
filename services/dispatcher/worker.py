"""The dispatcher role: consume `TaskDispatched` (group `dispatcher`), call the node
container, publish `TaskCompleted` or `TaskFailed`.

Calls run concurrently; offsets are committed only below the oldest call still running,
so after a crash (or a rebalance) the log is read again from there, and the dispatches
after that position include many whose calls ended: their outcomes lie further on in the
same partition (a task's events share its key). So wherever the dispatcher begins reading
a partition it has not been reading (a start, an assignment, a seek), it first reads to
that partition's end as of that moment (`Consumer.ends`), holding the dispatches back
(`Backlog`), and then calls only those whose attempt has no outcome and whose task has
not ended. What is guaranteed: a dispatch whose `TaskCompleted`/`TaskFailed` (or whose
task's terminal event) is in the log is never called again; what was in flight at a
crash is called again (at-least-once: the container sees the same `X-NGPU-Task-ID` and
`X-NGPU-Attempt`), as may be a call in flight on a member that lost its partition. A
second `TaskDispatched` of an attempt this process already called is not called.

Fair among workspaces: each workspace has its own calls in flight (at most
`max_concurrency`; the scheduler already keeps them within its ready replicas' slots) and
its own queue beyond them. The read loop never waits for a call slot, so a workspace
whose container hangs holds only its own calls, and another's dispatches behind it in the
log are called as soon as they are read.

Cancels: a `TaskCancelRequested` read for a task whose attempt this dispatcher calls aborts
the call (the connection to the node's proxy is closed, and the proxy closes its own to
the container) and publishes the task's `TaskCancelled` instead of an outcome; a dispatch
of a task whose cancel was requested, read later or held back, is never called, and ends
the same way. An outcome the call returned before the request was read is published as
usual and wins (the request then changes nothing here). The scheduler ends the tasks that
have no attempt in flight (`ClusterState.cancels_due`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque

import aiohttp

from events import (
    EventDecodeError,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskDispatched,
    TaskFailed,
    TraceContext,
    is_terminal,
    topics,
)
from services import tracing
from services.bus import (
    Bus,
    BusError,
    Consumer,
    Record,
    decode_record,
    publish_events,
)
from services.bus.patience import commit_quietly, end_of
from services.bus.progress import CatchUp, catching_up
from services.dispatcher.backlog import Backlog
from services.dispatcher.call import CallPolicy, call_node
from services.dispatcher.offsets import OffsetTracker
from services.logs import bind, workspace_hash
from services.metrics import sources
from services.metrics.instruments import record_call
from services.output import OutputSink
from services.readiness import Component

log = logging.getLogger(__name__)
GROUP = "dispatcher"
_ENDED_MEMORY = 100_000
_COMMIT_EVERY_S = 0.25
_PUBLISH_RETRY_MIN_S, _PUBLISH_RETRY_MAX_S = 0.5, 10.0

Partition = tuple[str, int]


class Dispatcher:
    """Runs until cancelled. `max_concurrency` bounds each workspace's calls in flight
    (and the pooled connections to each node port); no workspace waits for another's.
    `output` takes the streamed chunks of dispatches with `stream` (`services.output`).
    `ready` is caught up once it has read its partitions up to their ends as of its start
    and released what it held back."""

    def __init__(
        self,
        bus: Bus,
        policy: CallPolicy | None = None,
        *,
        max_concurrency: int = 256,
        ready: Component | None = None,
        output: OutputSink | None = None,
    ) -> None:
        self.bus = bus
        self.output = output
        self.ready = ready or Component("dispatcher")
        self.policy = policy or CallPolicy()
        self.max_concurrency = max_concurrency
        self.tracker = OffsetTracker()
        self._calls: set[asyncio.Task[None]] = set()
        # Per workspace: calls in flight, and the dispatches waiting for one of them to end.
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[TaskDispatched, Record]]] = {}
        self._stopping = False  # the calls are being cancelled: start no waiting one
        # Tasks whose outcome is already in the log: a redelivered dispatch is not re-run.
        self._ended: OrderedDict[str, None] = OrderedDict()
        # (task, attempt) pairs this process has called or read an outcome of: a second
        # `TaskDispatched` of the attempt (a stale scheduler leader's, or a redelivery)
        # is not called again.
        self._started: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Tasks not ended whose cancel was requested (their reasons), and the calls in
        # flight by task and attempt, which such a request aborts.
        self._cancels: OrderedDict[str, str] = OrderedDict()
        self._calling: dict[str, dict[int, asyncio.Task[TaskCompleted | TaskFailed]]] = {}
        # Per partition: the offset after the last record read. A record elsewhere means
        # the consumer moved (start, assignment, seek): read what lies ahead first.
        self._read_to: dict[Partition, int] = {}
        # Traces on: the trace context each dispatch read carries, until its call starts.
        self._traces: OrderedDict[tuple[str, int], TraceContext] = OrderedDict()
        self._backlogs: dict[Partition, Backlog] = {}
        self.session: aiohttp.ClientSession  # opened by run(), inside the event loop

    async def run(self) -> None:
        consumer = self.bus.consumer([topics.TASKS], group=GROUP, start="earliest")
        sources.watch_consumer(GROUP, consumer)
        last_commit = 0.0
        # aiohttp, not httpx: httpx's pool checks every pooled connection on each request
        # (a syscall each), which took most of a dispatcher's CPU with 64 open connections.
        # No pool-wide limit: one shared by all workspaces would queue B's calls behind
        # A's hung ones. Per node port (a deployment) it matches the per-workspace cap.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.max_concurrency)
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False)
        try:
            async with consumer:
                catch_up = await catching_up("dispatcher", consumer)
                committing: asyncio.Task[None] | None = None
                try:
                    while True:
                        records = await consumer.fetch(500, timeout_s=_COMMIT_EVERY_S)
                        for record in records:
                            await self._take(consumer, record)
                        if not self.ready.caught_up:
                            await self._catching_up(catch_up, consumer)
                        # Offsets are a durable write that competes with the task events
                        # for the log: commit a few times a second, not after every record
                        # (a crash repeats at most that much, which at-least-once allows),
                        # and in the background: a commit is a round trip to the broker,
                        # and dispatches arriving meanwhile must not wait for it.
                        idle = committing is None or committing.done()
                        if idle and time.monotonic() - last_commit >= _COMMIT_EVERY_S:
                            last_commit = time.monotonic()
                            offsets = self.tracker.committable()
                            committing = asyncio.create_task(commit_quietly(consumer, offsets))
                finally:
                    if committing is not None:
                        committing.cancel()
                        await asyncio.gather(committing, return_exceptions=True)
        finally:
            self._stopping = True
            self._waiting.clear()  # not finished: read again after a restart
            for call in list(self._calls):
                call.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)
            await self.session.close()

    async def _take(self, consumer: Consumer, record: Record) -> None:
        where = (record.topic, record.partition)
        if self._read_to.get(where) != record.offset:
            await self._begin_backlog(consumer, where, record.offset)
        self._read_to[where] = record.offset + 1
        self.tracker.started(record.topic, record.partition, record.offset)
        try:
            envelope = decode_record(record)
            event = envelope.event
        except EventDecodeError:
            log.warning("skipping undecodable record %s@%d", record.topic, record.offset)
            event = None
        if tracing.ENABLED and isinstance(event, TaskDispatched):
            _remember(self._traces, (event.task_id, event.attempt), envelope.trace)
        backlog = self._backlogs.get(where)
        if event is not None and is_terminal(event):
            self._remember_end(getattr(event, "task_id", ""))
        elif isinstance(event, TaskCancelRequested):
            self._cancel(event)
        if isinstance(event, TaskCompleted | TaskFailed):
            _first_time(self._started, (event.task_id, event.attempt))
        if event is not None and backlog is not None:
            for settled in backlog.settle(event):
                self._finished(settled)
        if not isinstance(event, TaskDispatched):
            self._finished(record)
        elif backlog is None:
            self._call(event, record)
        elif event.task_id in self._ended or not backlog.hold(event, record):
            self._finished(record)
        if backlog is not None and backlog.reached_by(record):
            del self._backlogs[where]
            for dispatch, held in backlog.release():
                self._call(dispatch, held)

    async def _catching_up(self, catch_up: CatchUp, consumer: Consumer) -> None:
        positions = await consumer.positions()
        catch_up.at(positions)
        # A partition taken away by a rebalance is not waited for: its new reader holds back.
        if catch_up.done and not any(where in positions for where in self._backlogs):
            self.ready.mark_caught_up()

    async def _begin_backlog(self, consumer: Consumer, where: Partition, offset: int) -> None:
        """Hold the dispatches of `where` from `offset` up to its end as of now."""
        stale = self._backlogs.pop(where, None)
        if stale is not None:  # below `offset` another member had them; the rest come again
            for _, record in stale.release():
                self._finished(record)
        end = max(await end_of(consumer, where), offset + 1)
        if end > offset + 1:
            log.info("reading %s:%d from %d to %d before calling", *where, offset, end)
        self._backlogs[where] = Backlog(end)

    def _call(self, dispatch: TaskDispatched, record: Record) -> None:
        """Call the node for `dispatch` unless its task ended or this attempt was called:
        now if its workspace has a free call slot, else once one of its calls ends."""
        if dispatch.task_id in self._ended or not _first_time(
            self._started, (dispatch.task_id, dispatch.attempt)
        ):
            self._finished(record)
            return
        workspace = dispatch.workspace_id
        # A cancelled dispatch calls nothing: it only publishes its end, at once.
        cancelled = dispatch.task_id in self._cancels
        if cancelled or self._running.get(workspace, 0) < self.max_concurrency:
            self._start(dispatch, record)
        else:
            self._waiting.setdefault(workspace, deque()).append((dispatch, record))

    def _start(self, dispatch: TaskDispatched, record: Record) -> None:
        workspace = dispatch.workspace_id
        self._running[workspace] = self._running.get(workspace, 0) + 1
        call = asyncio.create_task(self._dispatch(dispatch, record))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    def _release(self, workspace: str) -> None:
        """A call of `workspace` ended: start its next waiting dispatch whose task is live."""
        running = self._running[workspace] - 1
        if running:
            self._running[workspace] = running
        else:
            del self._running[workspace]
        waiting = self._waiting.get(workspace)
        while waiting and not self._stopping:
            dispatch, record = waiting.popleft()
            if dispatch.task_id in self._ended:  # cancelled or expired while it waited
                self._finished(record)
                continue
            self._start(dispatch, record)
            break
        if waiting is not None and not waiting:
            self._waiting.pop(workspace, None)

    def _finished(self, record: Record) -> None:
        self.tracker.finished(record.topic, record.partition, record.offset)

    def _cancel(self, request: TaskCancelRequested) -> None:
        """Abort the task's calls in flight, and end its dispatches waiting for a call
        slot; remember the request for its dispatches read later (or held back)."""
        task_id = request.task_id
        if task_id in self._ended:
            return
        self._cancels[task_id] = request.reason
        if len(self._cancels) > _ENDED_MEMORY:
            self._cancels.popitem(last=False)
        for call in self._calling.get(task_id, {}).values():
            call.cancel()
        waiting = self._waiting.get(request.workspace_id)
        for entry in [e for e in waiting or () if e[0].task_id == task_id]:
            assert waiting is not None
            waiting.remove(entry)
            self._start(*entry)

    async def _outcome(
        self, dispatch: TaskDispatched
    ) -> TaskCompleted | TaskFailed | TaskCancelled:
        """The call's outcome, or the task's `TaskCancelled` when its cancel was requested
        before the call returned (the call is aborted then, or never made)."""
        task_id, attempt = dispatch.task_id, dispatch.attempt
        if task_id not in self._cancels:
            call = asyncio.create_task(call_node(self.session, dispatch, self.policy, self.output))
            calls = self._calling.setdefault(task_id, {})
            calls[attempt] = call
            began = time.perf_counter()
            try:
                outcome = await call
                record_call(outcome, time.perf_counter() - began)
                return outcome
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if (current is not None and current.cancelling()) or task_id not in self._cancels:
                    raise  # the dispatcher stops: not a cancel of the task
            finally:
                if calls.get(attempt) is call:
                    del calls[attempt]
                if not calls and self._calling.get(task_id) is calls:
                    del self._calling[task_id]
        reason = self._cancels.get(task_id, "cancelled by the caller")
        return TaskCancelled(task_id=task_id, workspace_id=dispatch.workspace_id, reason=reason)

    async def _dispatch(self, dispatch: TaskDispatched, record: Record) -> None:
        # This call's own asyncio task: what is bound here is on its lines only.
        workspace = workspace_hash(dispatch.workspace_id)
        bind(task_id=dispatch.task_id, workspace=workspace, node=dispatch.node_id,
             attempt=dispatch.attempt)  # fmt: skip
        try:
            if not tracing.ENABLED:
                await self._settle(dispatch, record)
                return
            parent = self._traces.pop((dispatch.task_id, dispatch.attempt), None)
            with tracing.span(
                "dispatch", context=tracing.context_of(parent), kind=tracing.SpanKind.CONSUMER,
                attributes={"ngpu.task_id": dispatch.task_id, "ngpu.attempt": dispatch.attempt,
                            "ngpu.node_id": dispatch.node_id, "ngpu.workspace": workspace},
            ) as span:  # fmt: skip
                tracing.bind_trace_id(span)
                outcome = await self._settle(dispatch, record)
                span.set_attribute("ngpu.outcome", type(outcome).__name__)
        finally:
            self._release(dispatch.workspace_id)

    async def _settle(
        self, dispatch: TaskDispatched, record: Record
    ) -> TaskCompleted | TaskFailed | TaskCancelled:
        """Make the call (or not, when cancelled) and publish its outcome, retrying until
        the bus takes it; then the dispatch's record is done."""
        outcome = await self._outcome(dispatch)
        log.debug("attempt ended: %s", type(outcome).__name__)
        delay = _PUBLISH_RETRY_MIN_S
        while True:
            try:
                await publish_events(self.bus, [outcome])
                break
            except BusError as exc:  # keep the outcome until the bus takes it
                # The bus logs its outage once per interval: not a line per task here.
                log.debug("publishing %s failed, retrying: %s", dispatch.task_id, exc)
                await asyncio.sleep(delay)
                delay = min(_PUBLISH_RETRY_MAX_S, 2 * delay)
        self.tracker.finished(record.topic, record.partition, record.offset)
        return outcome

    def _remember_end(self, task_id: str) -> None:
        self._cancels.pop(task_id, None)
        self._ended[task_id] = None
        if len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)


def _remember(
    traces: OrderedDict[tuple[str, int], TraceContext],
    key: tuple[str, int],
    trace: TraceContext | None,
) -> None:
    """Keep the trace context of a dispatch until its call (the oldest forgotten past
    `_ENDED_MEMORY`)."""
    if trace is None:
        return
    traces[key] = trace
    if len(traces) > _ENDED_MEMORY:
        traces.popitem(last=False)


def _first_time(seen: OrderedDict[tuple[str, int], None], key: tuple[str, int]) -> bool:
    """Record `key` in `seen` (the oldest forgotten past `_ENDED_MEMORY`); whether it was new."""
    if key in seen:
        return False
    seen[key] = None
    if len(seen) > _ENDED_MEMORY:
        seen.popitem(last=False)
    return True
