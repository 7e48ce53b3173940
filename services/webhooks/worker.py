"""The `webhooks` role: consume the task topic (group `webhooks`), post each message a
task asked for to its webhook, signed, and record every attempt as an event.

Delivery is at least once. A message is tried when the event it reports is read (the
task's first `TaskDispatched` for `start`, its end for `completed`), then again after each
failed attempt, with exponential backoff and jitter (`RetryPolicy`), until the receiver
answers 2xx (`WebhookDelivered`) or the retry window passes (`WebhookAbandoned`). Every
attempt is a `WebhookAttempted` on the task's key, published durably before the next is
scheduled; the group's position is committed only below the oldest `TaskSubmitted` of a
task whose messages are not all settled (`OffsetTracker`), so a restarted role (or the
member a partition moves to) reads those tasks again, folds their attempts back into the
same schedule, and goes on. Wherever it begins reading a partition (a start, an
assignment) it first reads it to its end as of that moment, sending nothing of it
meanwhile: what was delivered or abandoned there is known before anything is sent. A
partition taken away by a rebalance is paused here (its messages are sent by its new
member); what was in flight may be sent by both (the receiver sees the same `webhook-id`).

Fair among workspaces: each has at most `max_concurrency` attempts in flight in this
process, its further messages queued behind its own: a receiver that hangs (up to the
10 s timeout of each attempt) holds only its own workspace's messages back."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from events import (
    Envelope,
    EventDecodeError,
    WebhookAbandoned,
    WebhookAttempted,
    WebhookDelivered,
    topics,
    utc_now,
)
from events.base import Event
from services.bus import Bus, BusError, Consumer, Record, decode_record
from services.bus.eventlog import publish_events
from services.bus.patience import commit_quietly, end_of
from services.bus.progress import CatchUp, catching_up
from services.dispatcher.offsets import OffsetTracker
from services.hosts import HostPolicy
from services.ingress.taskview import TaskStatus
from services.metrics import sources
from services.readiness import Component
from services.webhooks.delivery import TIMEOUT_S, attempt, session
from services.webhooks.payload import message_id, payload
from services.webhooks.retry import RetryPolicy
from services.webhooks.salts import SecretSalts
from services.webhooks.secrets import workspace_secret
from services.webhooks.state import HookedTask, Hooks, Message, Partition

log = logging.getLogger(__name__)
GROUP = "webhooks"
_COMMIT_EVERY_S = 0.5
_ASSIGNMENT_EVERY_S = 1.0
_UNKNOWN_WORKSPACE_RETRY_S = 1.0
_PUBLISH_RETRY_MIN_S, _PUBLISH_RETRY_MAX_S = 0.5, 10.0
_IDLE_WAKE_S = 3600.0


class WebhookWorker:
    """Runs until cancelled. `key` derives the workspaces' secrets (`services.webhooks
    .secrets`); `hosts` says where a webhook may go; `ready` is caught up once the
    workspaces' salts and this member's partitions (up to their ends as of its start)
    have been read."""

    def __init__(
        self,
        bus: Bus,
        key: bytes,
        *,
        hosts: HostPolicy | None = None,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 64,
        checkpoint_interval_s: float = 30.0,
        timeout_s: float = TIMEOUT_S,
        ready: Component | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.bus = bus
        self.key = key
        self.hosts = hosts or HostPolicy()
        self.retry = retry or RetryPolicy()
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.ready = ready or Component(GROUP)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self.salts = SecretSalts(bus, checkpoint_interval_s)
        self.hooks = Hooks()
        self.tracker = OffsetTracker()
        self._read_to: dict[Partition, int] = {}
        self._gates: dict[Partition, int] = {}
        """Partitions being read to these ends before any of their messages is sent."""
        self._paused: set[Partition] = set()
        """Partitions a rebalance took away: their messages wait (they may come back)."""
        self._heap: list[tuple[datetime, int, str, str]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[str, str, datetime]]] = {}
        self._attempts: set[asyncio.Task[None]] = set()
        self.http: aiohttp.ClientSession

    async def run(self) -> None:
        following = asyncio.create_task(self.salts.run(), name="webhook-secrets")
        self.http = session(self.hosts, limit_per_host=self.max_concurrency)
        try:
            while not self.salts.ready.caught_up:
                if following.done():
                    following.result()  # its error; else it ended, which it never does
                    raise BusError("the webhook secrets follower stopped")
                await asyncio.sleep(0.05)
            consumer = self.bus.consumer([topics.TASKS], group=GROUP, start="earliest")
            sources.watch_consumer(GROUP, consumer)
            async with consumer:
                catch_up = await catching_up(GROUP, consumer)
                firing = asyncio.create_task(self._fire_loop(), name="webhook-timer")
                try:
                    await self._read(consumer, catch_up, following)
                finally:
                    firing.cancel()
                    await asyncio.gather(firing, return_exceptions=True)
        finally:
            following.cancel()
            for running in list(self._attempts):
                running.cancel()
            await asyncio.gather(following, *self._attempts, return_exceptions=True)
            await self.http.close()

    async def _read(
        self, consumer: Consumer, catch_up: CatchUp, following: asyncio.Task[None]
    ) -> None:
        last_commit = last_look = 0.0
        committing: asyncio.Task[None] | None = None
        try:
            while True:
                if following.done():
                    following.result()
                    raise BusError("the webhook secrets follower stopped")
                records = await consumer.fetch(500, timeout_s=0.25)
                for record in records:
                    await self._take(consumer, record)
                if not self.ready.caught_up or time.monotonic() - last_look >= _ASSIGNMENT_EVERY_S:
                    last_look = time.monotonic()
                    positions = await consumer.positions()
                    await self._assignment(consumer, positions)
                    if not self.ready.caught_up:
                        catch_up.at(positions)
                        if catch_up.done and not any(w in positions for w in self._gates):
                            self.ready.mark_caught_up()
                idle = committing is None or committing.done()
                if idle and time.monotonic() - last_commit >= _COMMIT_EVERY_S:
                    last_commit = time.monotonic()
                    committing = asyncio.create_task(
                        commit_quietly(consumer, self.tracker.committable())
                    )
        finally:
            if committing is not None:
                committing.cancel()
                await asyncio.gather(committing, return_exceptions=True)

    # -- reading -----------------------------------------------------------------------

    async def _take(self, consumer: Consumer, record: Record) -> None:
        where = (record.topic, record.partition)
        if self._read_to.get(where) != record.offset:
            await self._begin(consumer, where, record.offset)
        self._read_to[where] = record.offset + 1
        self.tracker.started(record.topic, record.partition, record.offset)
        task: HookedTask | None = None
        try:
            task = self.hooks.apply(decode_record(record), where, record.offset)
        except EventDecodeError:
            log.warning("skipping undecodable record %s/%d@%d", *where, record.offset)
        if task is None or (task.where, task.offset) != (where, record.offset):
            self.tracker.finished(record.topic, record.partition, record.offset)
        if task is not None:
            if task.done:
                self._forget(task)
            else:
                self._schedule(task)
        end = self._gates.get(where)
        if end is not None and record.offset + 1 >= end:
            del self._gates[where]
            self._resume(where)

    async def _begin(self, consumer: Consumer, where: Partition, offset: int) -> None:
        """Begin reading `where` at `offset`, where this member was not reading: whatever
        lies below it was handled by whoever committed there (its tasks are forgotten
        here); hold the partition's messages until its end as of now has been read."""
        for task in self.hooks.in_partition(where):
            if task.offset < offset:
                self._forget(task)
        self._paused.discard(where)
        end = await end_of(consumer, where)
        if end > offset:
            if end > offset + 1:
                log.info("webhooks: reading %s:%d from %d to %d before sending", *where, offset,
                         end)  # fmt: skip
            self._gates[where] = end
        else:
            self._resume(where)

    async def _assignment(self, consumer: Consumer, positions: dict[Partition, int]) -> None:
        """Pause the partitions this member no longer holds; resume those it holds again
        (from where it was, or, when another member moved the position meanwhile, from
        there: `_begin`)."""
        for where in self._read_to.keys() - positions.keys():
            self._paused.add(where)
        for where in list(self._paused & positions.keys()):
            if positions[where] == self._read_to.get(where):
                self._paused.discard(where)
                self._resume(where)
            else:
                self._read_to[where] = positions[where]
                await self._begin(consumer, where, positions[where])

    def _resume(self, where: Partition) -> None:
        if where in self._gates or where in self._paused:
            return
        for task in self.hooks.in_partition(where):
            self._schedule(task)

    def _forget(self, task: HookedTask) -> None:
        """The task's messages are all settled (or another member owns them now)."""
        if self.hooks.tasks.get(task.task_id) is task:
            self.hooks.drop(task.task_id)
            self.tracker.finished(task.where[0], task.where[1], task.offset)

    # -- timing ------------------------------------------------------------------------

    def _schedule(self, task: HookedTask) -> None:
        for kind, message in task.messages.items():
            if message.due is not None and not message.settled and not message.in_flight:
                heapq.heappush(self._heap, (message.due, next(self._order), task.task_id, kind))
                self._wake.set()

    async def _fire_loop(self) -> None:
        while True:
            self._wake.clear()
            now = utc_now()
            while self._heap and self._heap[0][0] <= now:
                due, _, task_id, kind = heapq.heappop(self._heap)
                self._fire(task_id, kind, due)
            wait_s = (self._heap[0][0] - now).total_seconds() if self._heap else _IDLE_WAKE_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait_s, 0.001))

    def _due(self, task_id: str, kind: str, due: datetime) -> tuple[HookedTask, Message] | None:
        """The task and message a timer names, if that timer is still the message's."""
        task = self.hooks.tasks.get(task_id)
        message = task.messages.get(kind) if task is not None else None
        if task is None or message is None or message.settled or message.in_flight:
            return None
        if message.due != due or task.where in self._gates or task.where in self._paused:
            return None  # rescheduled; or held until its partition is read (`_resume`)
        return task, message

    def _fire(self, task_id: str, kind: str, due: datetime) -> None:
        found = self._due(task_id, kind, due)
        if found is None:
            return
        task, message = found
        workspace = task.workspace_id
        if self._running.get(workspace, 0) >= self.max_concurrency:
            self._waiting.setdefault(workspace, deque()).append((task_id, kind, due))
            return
        self._start(task, message)

    def _start(self, task: HookedTask, message: Message) -> None:
        message.in_flight, message.due = True, None
        workspace = task.workspace_id
        self._running[workspace] = self._running.get(workspace, 0) + 1
        running = asyncio.create_task(self._attempt(task, message))
        self._attempts.add(running)
        running.add_done_callback(self._attempts.discard)

    def _release(self, workspace: str) -> None:
        left = self._running[workspace] - 1
        if left:
            self._running[workspace] = left
        else:
            del self._running[workspace]
        waiting = self._waiting.get(workspace)
        while waiting:
            found = self._due(*waiting.popleft())
            if found is not None:
                self._start(*found)
                break
        if waiting is not None and not waiting:
            del self._waiting[workspace]

    # -- delivering --------------------------------------------------------------------

    async def _attempt(self, task: HookedTask, message: Message) -> None:
        try:
            number = message.attempts + 1
            tried = await self._try(task, message, number)
            if tried is None:  # the workspace's salt has not been read yet
                message.due = utc_now() + timedelta(seconds=_UNKNOWN_WORKSPACE_RETRY_S)
                return
            events, next_due = tried
            await self._publish(events)
            message.attempts = max(message.attempts, number)
            if next_due is None:
                message.settled = True
            else:
                message.due = next_due
        finally:
            message.in_flight = False
            self._release(task.workspace_id)
            if self.hooks.tasks.get(task.task_id) is task:
                if task.done:
                    self._forget(task)
                else:
                    self._schedule(task)

    async def _try(
        self, task: HookedTask, message: Message, number: int
    ) -> tuple[list[Envelope], datetime | None] | None:
        """Attempt `number` of `message`: the events that record it, and when the next
        attempt is due (None: settled). None when the workspace is not known yet."""
        try:
            salt = self.salts.salt(task.workspace_id)
        except KeyError:
            return None
        ids: dict[str, Any] = {
            "task_id": task.task_id, "workspace_id": task.workspace_id, "kind": message.kind,
            "message_id": message_id(task.task_id, message.kind),
        }  # fmt: skip
        if salt is None:
            reason = "the workspace was deleted"
            gone = WebhookAbandoned(**ids, attempts=message.attempts, reason=reason)
            return [Envelope(gone)], None
        status = task.status
        if message.kind == "start":
            status = TaskStatus(task.task_id, task.workspace_id, "running")
        body = payload(message.kind, status, message.event_at)
        secret = workspace_secret(self.key, task.workspace_id, salt)
        outcome = await attempt(self.http, self.hosts, task.url, ids["message_id"], body, secret,
                                timeout_s=self.timeout_s)  # fmt: skip
        at = utc_now()
        pause: float | None = None
        settled: Event | None = None
        if outcome.delivered:
            settled = WebhookDelivered(**ids, attempts=number, status_code=outcome.status_code)
        elif outcome.refused:
            settled = WebhookAbandoned(**ids, attempts=number, reason=outcome.error)
        else:
            elapsed_s = (at - message.event_at).total_seconds()
            pause = self.retry.next_pause(number, elapsed_s, self.rng)
            if pause is None:
                reason = (f"not delivered within {self.retry.window_s:g}s of the event, "
                          f"after {number} attempts; the last: {outcome.error}")  # fmt: skip
                settled = WebhookAbandoned(**ids, attempts=number, reason=reason)
        attempted = WebhookAttempted(
            **ids, attempt=number, status_code=outcome.status_code,
            latency_ms=outcome.latency_ms, error=outcome.error, retry_in_s=pause or 0.0,
        )  # fmt: skip
        events = [Envelope(attempted, occurred_at=at)]
        if settled is not None:
            events.append(Envelope(settled, occurred_at=at))
            if isinstance(settled, WebhookAbandoned):
                log.info("webhook %s of task %s abandoned: %s", message.kind, task.task_id,
                         settled.reason)  # fmt: skip
        return events, (at + timedelta(seconds=pause) if pause is not None else None)

    async def _publish(self, events: list[Envelope]) -> None:
        """Publish `events` durably, waiting out a bus that cannot take them."""
        delay = _PUBLISH_RETRY_MIN_S
        while True:
            try:
                await publish_events(self.bus, events)
                return
            except BusError as exc:  # the bus logs its outage once per interval
                log.debug("publishing a webhook attempt failed, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(_PUBLISH_RETRY_MAX_S, 2 * delay)
