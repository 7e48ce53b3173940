"""Follows the task topic from this ingress's start: keeps a `TaskView` and wakes the
sync requests waiting for their task to end. Works with any number of ingress processes:
each follows the whole topic. It also counts the queued bytes the queue's caps weigh: the
view's, and those of the submissions this ingress is publishing. It folds the scheduler's
`IdempotencyChecked` verdicts into `keys`, and wakes the submissions awaiting theirs.
It reads from the
topic's end as of its start, so it is caught up (`ready`) once started."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

from events import EventDecodeError, IdempotencyChecked, TaskSubmitted, topics
from services.bus import Bus, decode_record
from services.ingress.idempotency import KeyIndex
from services.ingress.taskview import TaskStatus, TaskView
from services.readiness import Component

log = logging.getLogger(__name__)


class TaskFollower:
    def __init__(
        self, bus: Bus, capacity: int = 200_000, *, ready: Component | None = None
    ) -> None:
        self.bus = bus
        self.view = TaskView(capacity)
        self.ready = ready or Component("tasks")
        self.keys = KeyIndex(capacity)
        self._waiters: dict[str, list[asyncio.Future[TaskStatus]]] = {}
        self._verdicts: dict[str, asyncio.Future[IdempotencyChecked]] = {}
        self._task: asyncio.Task[None] | None = None
        self._publishing: Counter[str] = Counter()
        self._publishing_total = 0
        self.on_status: Callable[[TaskStatus], None] | None = None
        """Called with a task's status after each of its events read from the log."""

    async def start(self) -> None:
        self._consumer = self.bus.consumer([topics.TASKS], group=None, start="latest")
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="task-follower")
        self.ready.mark_caught_up()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.close()

    def submitted(self, event: TaskSubmitted, at: datetime) -> None:
        """Record a submission this ingress just made durable, whose envelope's time is
        `at` (it may not have come back from the bus yet), so an immediate `queryTask` or
        `queryTaskList` finds it."""
        self.view.apply(event, at)

    def status(self, task_id: str) -> TaskStatus | None:
        return self.view.get(task_id)

    def queued_bytes(self, workspace_id: str | None = None) -> int:
        """Request body bytes of the tasks not ended that this ingress knows of (those
        submitted since it started following the log), the submissions it is publishing
        included: the workspace's, or every workspace's when `workspace_id` is None."""
        if workspace_id is None:
            return self.view.queued_bytes() + self._publishing_total
        return self.view.queued_bytes(workspace_id) + self._publishing.get(workspace_id, 0)

    @contextlib.contextmanager
    def publishing(self, workspace_id: str, size: int) -> Iterator[None]:
        """Count `size` bytes of a submission in `queued_bytes` while it is published and
        recorded (`submitted`), so the submissions in flight at once are all weighed."""
        self._publishing[workspace_id] += size
        self._publishing_total += size
        try:
            yield
        finally:
            self._publishing_total -= size
            self._publishing[workspace_id] -= size
            if self._publishing[workspace_id] <= 0:
                del self._publishing[workspace_id]

    def expect(self, task_id: str) -> asyncio.Future[TaskStatus]:
        """A future resolved with the task's terminal status. Call before publishing the
        submission, so the end cannot be missed; `forget` it if the wait is abandoned."""
        future: asyncio.Future[TaskStatus] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(future)
        return future

    def forget(self, task_id: str, future: asyncio.Future[TaskStatus]) -> None:
        waiting = self._waiters.get(task_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiters.pop(task_id, None)

    def expect_verdict(self, task_id: str) -> asyncio.Future[IdempotencyChecked]:
        """A future resolved with the scheduler's verdict on the keyed task `task_id`.
        Call before publishing it; `forget_verdict` once done with it."""
        future: asyncio.Future[IdempotencyChecked] = asyncio.get_running_loop().create_future()
        self._verdicts[task_id] = future
        return future

    def forget_verdict(self, task_id: str) -> None:
        self._verdicts.pop(task_id, None)

    async def _run(self) -> None:
        while True:
            try:
                for record in await self._consumer.fetch(1000, timeout_s=1.0):
                    try:
                        envelope = decode_record(record)
                    except EventDecodeError:
                        continue
                    if isinstance(envelope.event, IdempotencyChecked):
                        self._verdict(envelope.event, envelope.occurred_at)
                        continue
                    status = self.view.apply(envelope.event, envelope.occurred_at)
                    if status is not None and self.on_status is not None:
                        self.on_status(status)
                    if status is not None and status.ended:
                        for future in self._waiters.pop(status.task_id, []):
                            if not future.done():
                                future.set_result(status)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task follower failed; retrying")
                await asyncio.sleep(1.0)

    def _verdict(self, verdict: IdempotencyChecked, at: datetime) -> None:
        self.keys.apply(verdict, at)
        future = self._verdicts.pop(verdict.task_id, None)
        if future is not None and not future.done():
            future.set_result(verdict)
