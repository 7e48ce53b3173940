"""The scheduler role on any bus: fold every event into a `ClusterState`, then decide and
publish — retries for retryable failures and placements for waiting tasks whenever
something changed, lost nodes and replica placement on a tick. Decisions are folded
locally before the next round; folding them again when they come back from the bus
changes nothing.

One runner per cluster: two runners on one log would each place the same replicas.

The state is checkpointed (`services.checkpoints`) every `NGPU_CHECKPOINT_INTERVAL_S`,
right after a round's decisions are durable, so a start or a takeover loads it and folds
only the log after it: what it costs is a function of the live state and the tail, not
of the log's age. The runner's own decisions, folded before they come back, are in the
state already; folding them again changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime

from events import (
    Envelope,
    EventDecodeError,
    GpuInfo,
    TaskCancelRequested,
    TaskDispatched,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
    TraceContext,
    is_terminal,
    topics,
    utc_now,
)
from events.base import Event
from services import tracing
from services.bus import Bus, Record, decode_record, publish_events
from services.bus.progress import catching_up
from services.checkpoints import checkpoint_store, fingerprint
from services.checkpoints.fold import FoldCheckpoints
from services.logs import workspace_hash
from services.metrics import sources
from services.readiness import Component
from services.scheduler.autoscale import Autoscaler
from services.scheduler.config import SchedulerSettings
from services.scheduler.core import retry_event
from services.scheduler.profile import build_profile
from services.scheduler.queue import WaitQueue
from services.scheduler.records import (
    Assignment,
    DeploymentState,
    NodeState,
    QueuedTask,
    TaskPayload,
    WorkspaceSpec,
)
from services.scheduler.replicas import plan_replicas
from services.scheduler.rounds import cancel_requested, check_keys, dispatch_waiting
from services.scheduler.state import ClusterState
from services.settings import Settings

log = logging.getLogger(__name__)
_BATCH = 1000
_NEVER_S = 10.0**9
_TRACES_KEPT = 500_000
CHECKPOINT = "scheduler"
CHECKPOINT_VERSION = fingerprint(
    CHECKPOINT,
    [ClusterState, WaitQueue, NodeState, DeploymentState, WorkspaceSpec, TaskPayload,
     QueuedTask, Assignment, TaskFailed, GpuInfo],
)  # fmt: skip
"""Changes whenever the shape of the checkpointed state does: an older one is replayed over."""


def scheduler_settings(settings: Settings) -> SchedulerSettings:
    """The scheduler's tunables from the process settings."""
    lost_after = settings.node_lost_after_s
    return SchedulerSettings(
        heartbeat_window_s=min(lost_after, 3 * settings.heartbeat_interval_s),
        lost_after_s=lost_after,
    )


class SchedulerRunner:
    """Consumes all topics from its newest checkpoint, else from the beginning. Decides
    nothing before it has folded the log up to its ends as of the start (logging its
    progress); `ready` is caught up then."""

    def __init__(self, bus: Bus, settings: Settings, *, ready: Component | None = None) -> None:
        self.bus = bus
        self.ready = ready or Component("scheduler")
        self.checkpoints = FoldCheckpoints(
            checkpoint_store(bus), CHECKPOINT, CHECKPOINT_VERSION, settings.checkpoint_interval_s
        )
        self.tick_s = settings.scheduler_tick_s
        self.settings = scheduler_settings(settings)
        self.profile = build_profile(self.settings)
        self.state = ClusterState(ewma_alpha=self.settings.ewma_alpha)
        # Until the first lost-after window has passed, nobody is declared lost.
        self._warming = dataclasses.replace(self.settings, lost_after_s=_NEVER_S)
        self._retries: dict[str, TaskFailed] = {}
        self.autoscaler = Autoscaler()
        self.decisions = 0
        # Task -> (trace context, time in ns) its wait for a node began under; traces on only.
        self._traces: dict[str, tuple[TraceContext | None, int]] = {}
        sources.watch_scheduler(self)

    async def run(self) -> None:
        """Run until cancelled."""
        resumed = await self.checkpoints.resume()
        if resumed is not None:
            self.state, self._retries = resumed
        consumer = self.bus.consumer(
            topics.ALL_TOPICS, group=None, start="earliest", positions=self.checkpoints.positions
        )
        started = time.monotonic()
        last_tick = 0.0
        async with consumer:
            catch_up = await catching_up("scheduler", consumer, on_done=self.ready.mark_caught_up)
            while True:
                records = await consumer.fetch(_BATCH, timeout_s=self.tick_s)
                self._fold(records)
                await catch_up.fetched(records, consumer)
                if len(records) == _BATCH or not catch_up.done:
                    continue  # catch up before deciding anything
                now = utc_now()
                # Cancels first: a cancelled task whose attempt failed is not retried.
                events = cancel_requested(self.state, now)
                events += check_keys(self.state, now)
                events += self._retry(now)
                ticked = time.monotonic() - last_tick >= self.tick_s
                if ticked:
                    last_tick = time.monotonic()
                    # After a restart, nodes get one window to heartbeat before being judged.
                    warmed_up = time.monotonic() - started >= self.settings.lost_after_s
                    events += self._plan(now, self.settings if warmed_up else self._warming)
                free = self._free_slots() if self.state.queue else 0
                if self.state.queue and (ticked or free):
                    # A tick tries every waiting task; otherwise only as many as can fit.
                    limit = None if ticked else free
                    events += dispatch_waiting(self.state, now, self.profile, limit=limit)
                if events:
                    if tracing.ENABLED:
                        await self._publish_traced(events)
                    else:
                        await publish_events(self.bus, events)
                    self.decisions += len(events)
                # Consistent here: every record fetched is folded, every decision durable.
                await self.checkpoints.save_due(lambda: (self.state, self._retries))

    def _fold(self, records: list[Record]) -> None:
        traced = tracing.ENABLED
        for record in records:
            self.checkpoints.folded(record)
            try:
                envelope = decode_record(record)
            except EventDecodeError:
                log.warning("skipping undecodable record %s@%d", record.topic, record.offset)
                continue
            self.state.apply(envelope)
            if traced:
                self._follow_trace(envelope)
            event = envelope.event
            if isinstance(event, TaskFailed) and event.retryable:
                self._retries[event.task_id] = event
            elif isinstance(event, TaskRetried):
                failed = self._retries.get(event.task_id)
                if failed is not None and event.attempt > failed.attempt:
                    del self._retries[event.task_id]

    def _follow_trace(self, envelope: Envelope) -> None:
        """Remember, per task, the trace context and time its wait for a node began
        under: its submission, a failed attempt (before the retry), a cancel request; and
        forget it at the task's end. Only tasks the state holds live are remembered (a
        cancel that comes after the end leaves nothing). Not checkpointed: a task queued
        before a restart is scheduled in a trace of its own."""
        event = envelope.event
        task_id = getattr(event, "task_id", None)
        if not isinstance(task_id, str):
            return
        if is_terminal(event) or task_id not in self.state.tasks:
            self._traces.pop(task_id, None)  # ended, or (a late cancel, a replay) never live
        elif isinstance(event, TaskSubmitted | TaskFailed | TaskCancelRequested):
            self._traces[task_id] = (envelope.trace, time.time_ns())
            if len(self._traces) > _TRACES_KEPT:
                del self._traces[next(iter(self._traces))]

    async def _publish_traced(self, events: list[Event]) -> None:
        """Publish a round's decisions, each task's carrying its trace forward: a
        `TaskDispatched` in a `schedule` span (from when the task's wait began until the
        decision is durable) whose context it carries, the others with the context the
        task's wait began under."""
        spans: list[tracing.Span] = []
        envelopes: list[Envelope] = []
        for event in events:
            task_id = getattr(event, "task_id", None)
            parent, since = self._traces.get(task_id, (None, None)) if task_id else (None, None)
            if isinstance(event, TaskDispatched):
                span = tracing.start_span(
                    "schedule", context=tracing.context_of(parent), start_time=since,
                    attributes={"ngpu.task_id": event.task_id, "ngpu.attempt": event.attempt,
                                "ngpu.node_id": event.node_id,
                                "ngpu.deployment_id": event.deployment_id,
                                "ngpu.workspace": workspace_hash(event.workspace_id)},
                )  # fmt: skip
                spans.append(span)
                envelopes.append(Envelope(event, trace=tracing.trace_of(span)))
            else:
                envelopes.append(Envelope(event, trace=parent))
        try:
            await publish_events(self.bus, envelopes)
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(tracing.StatusCode.ERROR)
            raise
        finally:
            for span in spans:
                span.end()

    def _free_slots(self) -> int:
        """Ready replica slots not taken, summed over the workspaces with waiting tasks
        (an upper bound of what a round can place): rounds are skipped while nothing can
        move, and stop once that many tasks are placed (expiries and tasks that only fit
        after a heartbeat are handled on the tick)."""
        in_flight = self.state.in_flight_by_workspace
        free = 0
        for workspace_id in self.state.queue.waiting_workspaces():
            spec = self.state.workspaces.get(workspace_id)
            if spec is None:
                return len(self.state.queue)  # deleted: the round cancels its tasks
            slots = len(self.state.ready_deployment_ids(workspace_id)) * spec.concurrency
            free += max(0, slots - in_flight.get(workspace_id, 0))
        return free

    def _retry(self, now: datetime) -> list[Event]:
        """A `TaskRetried` for each retryable failure not yet retried (and not ended), or
        the end of a task no node is left to try."""
        events: list[Event] = []
        for task_id, failed in list(self._retries.items()):
            del self._retries[task_id]
            if task_id in self.state.tasks:
                retried = retry_event(self.state, failed)
                self.state.apply_event(retried, now)
                events.append(retried)
        return events

    def _plan(self, now: datetime, settings: SchedulerSettings) -> list[Event]:
        """The autoscaler's decisions, then the replica plan that carries them out (and
        keeps every workspace's replicas in line), each folded at `now`."""
        scaled: list[Event] = list(self.autoscaler.decide(self.state, now))
        for event in scaled:
            self.state.apply_event(event, now)
        planned = plan_replicas(self.state, now, settings)
        for event in planned:
            self.state.apply_event(event, now)
        return scaled + planned
